"""Reading a closure: every refusal names the file, the field and the rule (table-driven)."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from samples import encode, sample_bytes, sample_document

from toporder_sync.core.closure import MAX_CLOSURE_BYTES, parse_closure
from toporder_sync.core.errors import Category, ClosureRejected

VALID = "valid-metropole.json"


def edit(change: Callable[[dict[str, Any]], None]) -> bytes:
    document = sample_document(VALID)
    change(document)
    return encode(document)


def setter(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = document
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return change


RAW = sample_bytes(VALID).decode()

CASES: list[tuple[str, bytes, str, str]] = [
    # id, raw bytes, field named, words in the message
    ("json-number", edit(setter("payments.0.amount", 925.0)), "payments[0].amount", "JSON number"),
    ("integer-amount", edit(setter("sales.0.net", 1000)), "sales[0].net", "JSON number"),
    (
        "three-decimals",
        edit(setter("sales.0.net", "1000.001")),
        "sales[0].net",
        "at most two decimals",
    ),
    ("exponent", edit(setter("sales.0.net", "1e3")), "sales[0].net", "at most two decimals"),
    ("unknown-field", edit(setter("closure.note", "x")), "closure", "unknown field"),
    ("missing-field", edit(lambda d: d.pop("payments")), "$", "missing field: 'payments'"),
    ("wrong-tag", edit(setter("schema", "toporder.closure/v2")), "schema", "'toporder.closure/v1'"),
    ("not-eur", edit(setter("closure.currency", "USD")), "closure.currency", "'EUR'"),
    (
        "bad-date",
        edit(setter("closure.business_date", "2026-02-30")),
        "closure.business_date",
        "not a calendar date",
    ),
    (
        "naive-datetime",
        edit(setter("closure.opened_at", "2026-11-27T10:02:11")),
        "closure.opened_at",
        "offset",
    ),
    ("nan", RAW.replace('"1100.00"', "NaN").encode(), "$", "NaN is not allowed"),
    ("infinity", RAW.replace('"1100.00"', "Infinity").encode(), "$", "Infinity is not allowed"),
    (
        "duplicate-key",
        RAW.replace('"schema":', '"schema": "x", "schema":', 1).encode(),
        "$",
        "duplicated key 'schema'",
    ),
    ("bom", b"\xef\xbb\xbf" + RAW.encode(), "$", "byte order mark"),
    ("latin-1", RAW.encode("latin-1"), "$", "not UTF-8"),
    ("truncated", RAW.encode()[:200], "$", "not valid JSON"),
    ("array", b"[]", "$", "JSON object"),
    ("nested-too-deeply", b"[" * 100_000 + b"]" * 100_000, "$", "nested too deeply"),
    ("object-nested-too-deeply", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "$",
     "nested too deeply"),
    ("too-large", b" " * (MAX_CLOSURE_BYTES + 1), "$", "limit"),
]


@pytest.mark.parametrize(
    ("raw", "field", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_refusals_name_field_and_rule(raw: bytes, field: str, words: str) -> None:
    with pytest.raises(ClosureRejected) as caught:
        parse_closure(raw, "closures/petit-zinc.json")
    assert str(caught.value).startswith("closures/petit-zinc.json: closure refused")
    assert all(f.category is Category.POS for f in caught.value.findings)
    assert any(f.field == field and words in f.message for f in caught.value.findings), (
        caught.value.findings
    )


def test_every_schema_problem_is_reported_at_once() -> None:
    def change(document: dict[str, Any]) -> None:
        document["sales"][0]["net"] = 1000
        document["payments"][1]["amount"] = "200.001"
        document["extra"] = True

    with pytest.raises(ClosureRejected) as caught:
        parse_closure(edit(change), "f.json")
    fields = {f.field for f in caught.value.findings}
    assert {"sales[0].net", "payments[1].amount", "$"} <= fields


def test_amounts_are_decimals_to_the_cent() -> None:
    closure = parse_closure(edit(setter("sales.0.net", "1000")), "f.json")
    assert closure.sales[0].net == Decimal("1000.00")
    assert str(closure.sales[0].net) == "1000.00"
    assert all(type(p.amount) is Decimal for p in closure.payments)


def test_optional_tables_default_to_empty() -> None:
    closure = parse_closure(
        edit(lambda d: [d.pop(k) for k in ("tips", "gift_cards", "cash_count")]), "f.json"
    )
    assert closure.tips == () and closure.gift_cards_sold == Decimal("0.00")
    assert closure.cash_count is None and closure.tickets == ()


def test_sample_parses_with_its_values() -> None:
    closure = parse_closure(sample_bytes(VALID), VALID)
    assert (closure.number, closure.piece_ref, closure.establishment_name) == (
        412,
        "Z412",
        "Le Petit Zinc",
    )
    assert json.loads(sample_bytes(VALID))["closure"]["grand_total"]["period"] == "1460.00"
    assert closure.period_total == Decimal("1460.00")

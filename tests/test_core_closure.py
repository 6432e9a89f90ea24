"""Reading a closure: every refusal names the file, the field and the rule (table-driven)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from samples import encode, sample_bytes, sample_document

from toporder_sync.core import bounds
from toporder_sync.core.closure import MAX_CLOSURE_BYTES, load_document, parse_closure, route
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


# --- bounds at the door (issue 22) --------------------------------------------------------
# What passes reading is stored, then run: a value the ledger cannot store, or Python cannot
# compute with, is refused here, naming its field and rule, whatever path the reading takes.

RECEIVED_AT = datetime(2026, 11, 28, 5, 30, tzinfo=UTC)
LONG_NUMBER = "9" * 5000


def _with_ticket(closed_at: str) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        document["tickets"] = [{"number": "T1", "closed_at": closed_at,
                                "lines": [{"kind": "sale", "vat_rate": "10", "gross": "1.00"}],
                                "payments": [{"method": "Espèces", "amount": "1.00"}]}]
    return change


def escaped(change: Callable[[dict[str, Any]], None]) -> bytes:
    """``edit``, every character outside ASCII sent as a JSON escape (``\\u0000``, a lone
    ``\\ud800``): how such text arrives, as no UTF-8 encodes a surrogate."""
    document = sample_document(VALID)
    change(document)
    return json.dumps(document).encode("ascii")


def _key(key: str) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        document["establishment"][key] = "x"
    return change


BOUNDS_CASES: list[tuple[str, bytes, str, str]] = [
    # id, raw bytes, rule, field named
    ("number-2^63", escaped(setter("closure.number", 2**63)), "bounds.integer", "closure.number"),
    ("number-10^30", escaped(setter("closure.number", 10**30)), "bounds.integer", "closure.number"),
    ("number-negative-2^64", escaped(setter("closure.number", -(2**64))), "bounds.integer",
     "closure.number"),
    ("number-5000-digits", RAW.replace('"number": 412', f'"number": {LONG_NUMBER}').encode(),
     "bounds.digits", "closure.number"),
    ("5000-digits-elsewhere",
     RAW.replace('"amount": "925.00"', f'"amount": {LONG_NUMBER}').encode(),
     "bounds.digits", "payments[0].amount"),
    ("5000-digit-decimal", RAW.replace('"amount": "925.00"', f'"amount": 0.{LONG_NUMBER}')
     .encode(), "bounds.digits", "payments[0].amount"),
    ("nul-in-identifier", escaped(setter("establishment.id", "TOP-\u00001042")), "bounds.text",
     "establishment.id"),
    ("nul-in-integration-id", escaped(setter("integration_id", "tpo\u0000")), "bounds.text",
     "integration_id"),
    ("nul-in-name", escaped(setter("establishment.name", "Le Petit\u0000Zinc")), "bounds.text",
     "establishment.name"),
    ("nul-in-method", escaped(setter("payments.1.method", "Swile\u0000")), "bounds.text",
     "payments[1].method"),
    ("surrogate-in-name", escaped(setter("establishment.name", "Le Petit \ud800Zinc")),
     "bounds.text", "establishment.name"),
    ("surrogate-in-ticket-method", escaped(lambda d: (
        _with_ticket("2026-11-27T12:00:00+01:00")(d),
        setter("tickets.0.payments.0.method", "\udfff")(d))), "bounds.text",
     "tickets[0].payments[0].method"),
    ("nul-in-key", escaped(_key("na\u0000me")), "bounds.text", 'establishment["na\\u0000me"]'),
    ("surrogate-in-key", escaped(_key("\ud800")), "bounds.text", 'establishment["\\ud800"]'),
    ("business-date-9999", escaped(setter("closure.business_date", "9999-12-31")), "bounds.date",
     "closure.business_date"),
    ("business-date-year-1", escaped(setter("closure.business_date", "0001-01-01")),
     "bounds.date", "closure.business_date"),
    ("business-date-1999", escaped(setter("closure.business_date", "1999-12-31")), "bounds.date",
     "closure.business_date"),
    ("opened-at-year-1", escaped(setter("closure.opened_at", "0001-01-01T00:00:00+14:00")),
     "bounds.date", "closure.opened_at"),
    ("closed-at-9999", escaped(setter("closure.closed_at", "9999-12-31T23:59:59-14:00")),
     "bounds.date", "closure.closed_at"),
    ("ticket-closed-at-9999", escaped(_with_ticket("9999-12-31T23:59:59-14:00")), "bounds.date",
     "tickets[0].closed_at"),
]


@pytest.mark.parametrize(("raw", "rule", "field"), [c[1:] for c in BOUNDS_CASES],
                         ids=[c[0] for c in BOUNDS_CASES])
def test_values_out_of_bounds_are_refused_naming_field_and_rule(raw: bytes, rule: str,
                                                                 field: str) -> None:
    for read in (lambda: parse_closure(raw, "f.json"),
                 lambda: route(load_document(raw, "f.json"), "f.json", now=RECEIVED_AT)):
        with pytest.raises(ClosureRejected) as caught:
            read()
        assert [(f.category, f.rule, f.field) for f in caught.value.findings] == [
            (Category.POS, rule, field)], caught.value.findings
        # The message is text any store takes, whatever the value: logged, sent as JSON.
        message = str(caught.value)
        assert "\x00" not in message and message.encode("utf-8")


def test_every_value_out_of_bounds_is_named_at_once() -> None:
    def change(document: dict[str, Any]) -> None:
        document["closure"]["number"] = 2**64
        document["payments"][0]["method"] = "\u0000"
        document["closure"]["opened_at"] = "0001-01-01T00:00:00Z"

    with pytest.raises(ClosureRejected) as caught:
        load_document(edit(change), "f.json")
    assert {(f.rule, f.field) for f in caught.value.findings} == {
        ("bounds.integer", "closure.number"), ("bounds.text", "payments[0].method"),
        ("bounds.date", "closure.opened_at")}


@pytest.mark.parametrize("number", [2**31, 2**32, 2**63 - 1])
def test_a_closure_number_of_64_bits_is_read(number: int) -> None:
    raw = edit(setter("closure.number", number))
    assert parse_closure(raw, "f.json").number == number
    assert route(load_document(raw, "f.json"), "f.json", now=RECEIVED_AT).number == number


@pytest.mark.parametrize(("day", "refused"), [("2026-11-30", False), ("2026-12-01", True),
                                              ("2999-12-31", True)])
def test_a_business_date_after_the_receipt_is_refused(day: str, refused: bool) -> None:
    raw = edit(setter("closure.business_date", day))
    document = load_document(raw, "f.json")
    if not refused:
        assert route(document, "f.json", now=RECEIVED_AT).business_date.isoformat() == day
        return
    with pytest.raises(ClosureRejected) as caught:
        route(document, "f.json", now=RECEIVED_AT)
    assert [(f.rule, f.field) for f in caught.value.findings] == [
        ("bounds.date", "closure.business_date")]
    assert "2026-11-30" in caught.value.findings[0].message


@pytest.mark.parametrize("day", ["2000-01-01", "2999-12-31"])
def test_dates_at_the_bounds_are_read(day: str) -> None:
    def change(document: dict[str, Any]) -> None:
        document["closure"]["business_date"] = day
        document["closure"]["opened_at"] = f"{day}T00:00:00+14:00"
        document["closure"]["closed_at"] = f"{day}T23:59:59-12:00"

    assert parse_closure(edit(change), "f.json").business_date.isoformat() == day


def test_texts_out_of_the_basic_plane_are_read() -> None:
    closure = parse_closure(edit(setter("establishment.name", "Le Petit Zinc 🍷")), "f.json")
    assert closure.establishment_name == "Le Petit Zinc 🍷"


# --- the schema copy carries the same bounds ----------------------------------------------

SCHEMA_COPY = Path(__file__).resolve().parent.parent / "schemas" / "closure-v1.schema.json"


def _string_fields(node: Any, path: str = "$") -> list[tuple[str, dict[str, Any]]]:
    """Every string-typed schema in the schema, with where it is."""
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        if node.get("type") == "string":
            found.append((path, node))
        for key, value in node.items():
            found += _string_fields(value, f"{path}/{key}")
    return found


def test_the_schema_copy_and_bounds_agree() -> None:
    schema = json.loads(SCHEMA_COPY.read_bytes())
    number = schema["properties"]["closure"]["properties"]["number"]
    assert number["maximum"] == bounds.MAX_INT and number["minimum"] >= bounds.MIN_INT
    for where, field in _string_fields(schema):
        if "format" in field:  # a date or a date-time
            assert field["pattern"] == bounds.YEAR_PATTERN, where
        elif field.get("pattern") not in (schema["$defs"]["amount"]["pattern"],
                                          schema["$defs"]["rate"]["pattern"]):
            assert field.get("pattern") == bounds.TEXT_PATTERN, where  # any free text
    # The patterns say what bounds.py checks.
    year = re.compile(bounds.YEAR_PATTERN)
    assert [y for y in range(10_000) if year.search(f"{y:04d}-01-01")] == list(
        range(bounds.FIRST_YEAR, bounds.LAST_YEAR + 1))
    assert all((bounds.year_problem(f"{y:04d}-01-01") is None) == (
        bounds.FIRST_YEAR <= y <= bounds.LAST_YEAR) for y in range(10_000))
    text = re.compile(bounds.TEXT_PATTERN)
    for code in (*range(0x80), *range(0xD700, 0xE100), 0xFFFD, 0x1F377, 0x10FFFF):
        character = chr(code)
        assert (text.search(f"a{character}b") is None) == (
            bounds.text_problem(f"a{character}b") is not None), hex(code)


@pytest.mark.parametrize(("raw", "rule", "field"),
                         [c[1:] for c in BOUNDS_CASES if c[2] != "bounds.digits"],
                         ids=[c[0] for c in BOUNDS_CASES if c[2] != "bounds.digits"])
def test_the_schema_copy_refuses_what_bounds_refuse(raw: bytes, rule: str, field: str) -> None:
    validator = Draft202012Validator(json.loads(SCHEMA_COPY.read_bytes()))
    assert not validator.is_valid(json.loads(raw))

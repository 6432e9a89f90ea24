"""The fast paths of reading and validating a closure give the findings of the slow ones.

* JSON Schema: the compiled check (``fastjsonschema``) only answers "valid"; whenever
  ``jsonschema`` finds a problem, the compiled check must have said "invalid" too, so that the
  findings reported are always ``jsonschema``'s, field by field.
* Money in cents: a value that is not an exact amount in cents is still reported, naming its
  field and the ``exact_money`` rule, while the tables are converted.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import date
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest
from pandera.errors import SchemaErrors
from samples import read_in_one_go, sample_document

from toporder_sync.core import closure as reading
from toporder_sync.core.closure import parse_closure
from toporder_sync.core.model import Territory
from toporder_sync.core.money import cents, from_cents
from toporder_sync.core.validate import validate_closure
from toporder_sync.schemas import PaymentsTable
from toporder_sync.simulator import FAULTS, dumps, generate_closure

Doc = dict[str, Any]


def simulated() -> Doc:
    return generate_closure(integration_id="tpo_f", establishment_id="E", establishment_name="F",
                            business_date=date(2026, 3, 28), number=5,
                            perpetual_before=Decimal("100.00"))


def at(document: Doc, path: str) -> tuple[Any, str | int]:
    *parents, last = path.split(".")
    node: Any = document
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    return node, int(last) if last.isdigit() else last


def put(path: str, value: Any, base: Doc) -> Doc:
    document = copy.deepcopy(base)
    node, key = at(document, path)
    node[key] = value
    return document


def drop(path: str, base: Doc) -> Doc:
    document = copy.deepcopy(base)
    node, key = at(document, path)
    del node[key]
    return document


SAMPLE = sample_document("valid-metropole.json")
SIMULATED = simulated()
BAD: list[tuple[str, Doc]] = [
    ("number-amount", put("payments.0.amount", 925, SAMPLE)),
    ("decimal-amount", put("sales.0.net", Decimal("1000.00"), SAMPLE)),
    ("three-decimals", put("sales.0.vat", "100.001", SAMPLE)),
    ("leading-zero", put("gift_cards.sold", "050.00", SAMPLE)),
    ("rate-as-number", put("sales.1.vat_rate", 20, SAMPLE)),
    ("rate-three-digits", put("sales.1.vat_rate", "120", SAMPLE)),
    ("empty-method", put("payments.1.method", "", SAMPLE)),
    ("long-method", put("payments.1.method", "x" * 101, SAMPLE)),
    ("method-number", put("tips.0.method", 3, SAMPLE)),
    ("wrong-tag", put("schema", "toporder.closure/v2", SAMPLE)),
    ("usd", put("closure.currency", "USD", SAMPLE)),
    ("number-zero", put("closure.number", 0, SAMPLE)),
    ("number-bool", put("closure.number", True, SAMPLE)),
    ("number-decimal", put("closure.number", Decimal("412.0"), SAMPLE)),
    ("number-text", put("closure.number", "412", SAMPLE)),
    ("date-number", put("closure.business_date", 20261127, SAMPLE)),
    ("unknown-field", put("closure.note", "x", SAMPLE)),
    ("unknown-top-field", put("extra", True, SAMPLE)),
    ("missing-payments", drop("payments", SAMPLE)),
    ("missing-net", drop("sales.0.net", SAMPLE)),
    ("missing-sold", drop("gift_cards.sold", SAMPLE)),
    ("sales-object", put("sales", {"vat_rate": "10"}, SAMPLE)),
    ("establishment-list", put("establishment", [], SAMPLE)),
    ("null-name", put("establishment.name", None, SAMPLE)),
    ("empty-integration", put("integration_id", "", SAMPLE)),
    ("line-kind", put("tickets.3.lines.0.kind", "discount", SIMULATED)),
    ("line-gross-number", put("tickets.7.lines.0.gross", 12, SIMULATED)),
    ("line-extra", put("tickets.0.lines.0.note", "x", SIMULATED)),
    ("ticket-number-empty", put("tickets.2.number", "", SIMULATED)),
    ("ticket-closed-at-number", put("tickets.2.closed_at", 0, SIMULATED)),
    ("ticket-payments-missing", drop("tickets.4.payments", SIMULATED)),
    ("ticket-payment-amount", put("tickets.4.payments.0.amount", "1,00", SIMULATED)),
    ("lines-not-list", put("tickets.1.lines", "none", SIMULATED)),
    ("many", put("sales.0.net", 1, put("payments.0.amount", "x", drop("closure", SAMPLE)))),
]


def slow_findings(document: Doc) -> list[tuple[str, str, str]]:
    """What ``jsonschema`` alone reports, as the reading did before the compiled check."""
    errors = sorted(reading._VALIDATOR.iter_errors(document), key=lambda e: repr(list(e.path)))
    return [(f"schema.{e.validator}", reading._path(e.absolute_path), reading._schema_message(e))
            for e in errors]


@pytest.mark.parametrize("document", [SAMPLE, SIMULATED], ids=["sample", "simulated"])
def test_valid_documents_pass_both_checks(document: Doc) -> None:
    assert read_in_one_go(document)
    assert slow_findings(document) == []
    assert reading._schema_findings(document) == []


@pytest.mark.parametrize("document", [d for _, d in BAD], ids=[name for name, _ in BAD])
def test_a_document_jsonschema_refuses_is_never_passed_by_the_compiled_check(
    document: Doc,
) -> None:
    slow = slow_findings(document)
    assert slow, "the corpus must hold documents that break the schema"
    assert not read_in_one_go(document)
    reported = [(f.rule, f.field, f.message) for f in reading._schema_findings(document)]
    assert reported == slow


def test_where_the_compiled_check_is_stricter_jsonschema_decides() -> None:
    # "$" in jsonschema's patterns also matches before a final newline; the compiled "\\Z"
    # does not. The compiled check says invalid, jsonschema finds nothing: nothing reported.
    document = put("sales.0.net", "1000.00\n", SAMPLE)
    assert not read_in_one_go(document)
    assert slow_findings(document) == reading._schema_findings(document) == []


@pytest.mark.parametrize("faults", [frozenset(), frozenset(FAULTS)], ids=["valid", "faults"])
def test_reading_in_one_go_gives_the_closure_and_findings_of_the_slow_reading(
    faults: frozenset[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = dumps(generate_closure(integration_id="tpo_f", establishment_id="E",
                                 establishment_name="F", business_date=date(2026, 3, 28),
                                 number=5, perpetual_before=Decimal("100.00"), faults=faults))
    assert reading._read(raw, "f.json", reading.LineCache()) is not None
    fast = parse_closure(raw, "f.json")
    monkeypatch.setattr(reading, "_read", lambda raw, source, known: None)
    slow = parse_closure(raw, "f.json")
    assert fast == slow
    assert validate_closure(fast, Territory.METROPOLE) == validate_closure(
        slow, Territory.METROPOLE)


def test_cents_are_exact_or_refused() -> None:
    assert cents(Decimal("12.30")) == 1230 and cents(Decimal("-0.05")) == -5
    assert from_cents(-5) == Decimal("-0.05") and str(from_cents(1230)) == "12.30"
    for value in (Decimal("12.3"), Decimal("1.005"), Decimal("NaN"), 1.0, 12, "1.00", None):
        assert cents(value) is None, value


def test_an_amount_that_is_not_exact_cents_is_reported_with_its_field() -> None:
    closure = parse_closure(dumps(SIMULATED), "f.json")
    ticket = closure.tickets[2]
    line = replace(ticket.lines[0], gross=Decimal("3.505"))
    tickets = list(closure.tickets)
    tickets[2] = replace(ticket, lines=(line, *ticket.lines[1:]))
    payment = replace(closure.payments[0], amount=Decimal("10.5"))
    broken = replace(closure, tickets=tuple(tickets),
                     payments=(payment, *closure.payments[1:]))
    found = {(f.rule, f.field): f.message for f in validate_closure(broken, Territory.METROPOLE)}
    assert found[("exact_money", "tickets[2].lines[0].gross")] == (
        "gross Decimal('3.505') is not an exact amount in cents")
    assert found[("exact_money", "payments[0].amount")] == (
        "amount Decimal('10.5') is not an exact amount in cents")


def test_text_columns_are_checked_on_their_dtype() -> None:
    frame = pd.DataFrame({"method": pd.array(["CB"], dtype="str"), "amount": [100]})
    PaymentsTable.validate(frame, lazy=True)
    with pytest.raises(SchemaErrors) as caught:
        PaymentsTable.validate(frame.astype({"method": object}), lazy=True)
    assert any("dtype" in str(check) for check in caught.value.failure_cases["check"])

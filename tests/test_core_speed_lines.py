"""Reading a closure's ticket lines and payments once per distinct one gives what reading each
one gives.

* The compiled JSON Schema check passes a line (a ticket's payment) equal to one it has already
  passed without checking it again. Whatever the lines and payments of a day, it must still
  answer "valid" only where ``jsonschema`` finds nothing: equal text with another JSON type, a
  line that is no ``dict``, an unhashable value, keys in another order, a line repeated after a
  broken one.
* ``parse_closure`` shares one ``TicketLine`` (``MethodAmount``) among equal lines (payments),
  read as they are checked: the records read are equal to those read one by one, amounts and
  rates keeping the exponent of their text, and a day the compiled checks refuse but
  ``jsonschema`` passes is read line by line.
* ``validate_closure`` works out a shared record's columns once: its findings are those of the
  same closure with a record of its own for every line, row by row.
"""

from __future__ import annotations

import copy
import random
from collections import OrderedDict
from dataclasses import replace
from datetime import date
from decimal import Decimal
from functools import partial
from typing import Any

import pytest
from samples import read_in_one_go

from toporder_sync.core import closure as reading
from toporder_sync.core.closure import parse_closure
from toporder_sync.core.errors import ClosureRejected
from toporder_sync.core.model import Closure, LineKind, MethodAmount, Territory, TicketLine
from toporder_sync.core.money import parse_amount, parse_rate
from toporder_sync.core.validate import _LineRecords, validate_closure
from toporder_sync.simulator import FAULTS, dumps, generate_closure

Doc = dict[str, Any]

SALE = {"kind": "sale", "vat_rate": "10", "gross": "4.50"}
CARD = {"method": "Carte Bancaire", "amount": "4.50"}


def simulated() -> Doc:
    return generate_closure(integration_id="tpo_s", establishment_id="E", establishment_name="S",
                            business_date=date(2026, 3, 30), number=7,
                            perpetual_before=Decimal("10.00"))


SIMULATED = simulated()
FEW_TICKETS = {**SIMULATED, "tickets": SIMULATED["tickets"][:12]}  # jsonschema takes its time


def jsonschema_passes(document: Doc) -> bool:
    return not any(True for _ in reading._VALIDATOR.iter_errors(document))


def with_items(part: str, *items: Any) -> Doc:
    """The simulated day with its first ticket's lines (payments) replaced (other tickets
    unchanged)."""
    document = copy.deepcopy(FEW_TICKETS)
    document["tickets"][0][part] = list(items)
    return document


with_lines = partial(with_items, "lines")
with_payments = partial(with_items, "payments")


CASES: list[tuple[str, Doc, bool]] = [
    ("repeated", with_lines(SALE, dict(SALE), dict(SALE)), True),
    ("same-object", with_lines(SALE, SALE), True),
    ("other-key-order", with_lines(SALE, {"gross": "4.50", "vat_rate": "10", "kind": "sale"}),
     True),
    ("number-after-text", with_lines(SALE, {**SALE, "gross": 4.5}), False),
    ("decimal-after-text", with_lines(SALE, {**SALE, "gross": Decimal("4.50")}), False),
    ("bool-kind", with_lines(SALE, {**SALE, "kind": True}), False),
    ("list-value", with_lines(SALE, {**SALE, "gross": ["4.50"]}), False),
    ("object-value", with_lines(SALE, {**SALE, "vat_rate": {"10": "10"}}), False),
    ("extra-key", with_lines(SALE, {**SALE, "note": "x"}), False),
    ("missing-key", with_lines(SALE, {"kind": "sale", "vat_rate": "10"}), False),
    ("list-after-dict", with_lines(SALE, list(SALE.items())), False),
    ("text-line", with_lines(SALE, "sale"), False),
    ("null-line", with_lines(SALE, None), False),
    ("broken-then-repeated", with_lines({**SALE, "gross": "4.5.0"}, SALE), False),
    ("ordered-dict-then-list", with_lines(OrderedDict(SALE), [], SALE), False),
    ("ordered-dict", with_lines(OrderedDict(SALE), SALE), True),
    ("no-lines", with_lines(), True),
    ("lines-not-list", {**copy.deepcopy(FEW_TICKETS),
                        "tickets": [{**FEW_TICKETS["tickets"][0], "lines": SALE}]}, False),
]


PAYMENT_CASES: list[tuple[str, Doc, bool]] = [
    ("repeated", with_payments(CARD, dict(CARD), dict(CARD)), True),
    ("same-object", with_payments(CARD, CARD), True),
    ("other-key-order", with_payments(CARD, {"amount": "4.50", "method": "Carte Bancaire"}),
     True),
    ("number-after-text", with_payments(CARD, {**CARD, "amount": 4.5}), False),
    ("decimal-after-text", with_payments(CARD, {**CARD, "amount": Decimal("4.50")}), False),
    ("empty-method", with_payments(CARD, {**CARD, "method": ""}), False),
    ("long-method", with_payments(CARD, {**CARD, "method": "x" * 101}), False),
    ("list-value", with_payments(CARD, {**CARD, "amount": ["4.50"]}), False),
    ("extra-key", with_payments(CARD, {**CARD, "note": "x"}), False),
    ("missing-key", with_payments(CARD, {"method": "Carte Bancaire"}), False),
    ("text-payment", with_payments(CARD, "Carte Bancaire"), False),
    ("broken-then-repeated", with_payments({**CARD, "amount": "4,50"}, CARD), False),
    ("no-payments", with_payments(), True),
    ("payments-not-list", {**copy.deepcopy(FEW_TICKETS),
                           "tickets": [{**FEW_TICKETS["tickets"][0], "payments": CARD}]}, False),
]


@pytest.mark.parametrize(
    ("document", "valid"),
    [(d, v) for _, d, v in (*CASES, *PAYMENT_CASES)],
    ids=[*(f"line-{name}" for name, _, _ in CASES),
         *(f"payment-{name}" for name, _, _ in PAYMENT_CASES)])
def test_a_line_or_payment_passed_once_is_not_a_pass_for_another(document: Doc,
                                                                  valid: bool) -> None:
    assert jsonschema_passes(document) is valid
    assert read_in_one_go(document) is valid


# What an edit may put in a line's or a payment's fields, and the fields it may edit.
EDITS: dict[str, tuple[list[Any], list[str]]] = {
    "lines": (["sale", "refund", "tip", "gift_card", "discount", "", "10", "5.5", "20", "120",
               "4.50", "4.5", "-4.50", "04.50", "4.501", "4.50\n", 4.5, Decimal("4.50"), 10,
               True, None, [], {}, "x" * 3],
              ["kind", "vat_rate", "gross", "note"]),
    "payments": (["Carte Bancaire", "Espèces", "", "x" * 101, "4.50", "4.5", "-4.50", "04.50",
                  "4.501", "4.50\n", "1,00", 4.5, Decimal("4.50"), 10, True, None, [], {}],
                 ["method", "amount", "note"]),
}


def _mutated(part: str, count: int) -> list[Doc]:
    """A day's first tickets, a line (payment) of them edited at random and inserted among
    equal ones."""
    rng = random.Random(20261128)  # noqa: S311 (test edits, not a secret)
    values, keys = EDITS[part]
    documents = []
    for _ in range(count):
        document = copy.deepcopy(FEW_TICKETS)
        ticket = rng.choice(document["tickets"])
        item = rng.choice(ticket[part])
        ticket[part].append(dict(item))
        edited = dict(item)
        for _ in range(rng.choice((1, 1, 2))):
            key = rng.choice(keys)
            if rng.random() < 0.2:
                edited.pop(key, None)
            else:
                edited[key] = rng.choice(values)
        ticket[part].insert(rng.randrange(len(ticket[part]) + 1), edited)
        documents.append(document)
    return documents


@pytest.mark.parametrize("part", ["lines", "payments"])
def test_no_edited_line_or_payment_passes_that_jsonschema_refuses(part: str) -> None:
    passed = refused = 0
    for document in _mutated(part, 400):
        fast = read_in_one_go(document)
        slow = jsonschema_passes(document)
        assert slow or not fast, document
        passed += fast
        refused += not slow
    # the edits leave some days valid and break most: both answers are exercised
    assert passed > 20 and refused > 200, (passed, refused)


def test_shared_line_records_equal_the_lines_read_one_by_one() -> None:
    closure = parse_closure(dumps(SIMULATED), "s.json")
    for ticket, source in zip(closure.tickets, SIMULATED["tickets"], strict=True):
        assert ticket.lines == tuple(
            TicketLine(LineKind(line["kind"]),
                       parse_rate(line["vat_rate"]) if "vat_rate" in line else None,
                       parse_amount(line["gross"]))
            for line in source["lines"])
    lines = [line for ticket in closure.tickets for line in ticket.lines]
    assert len({id(line) for line in lines}) < len(lines) / 2  # equal lines share a record


def test_shared_payment_records_equal_the_payments_read_one_by_one() -> None:
    closure = parse_closure(dumps(SIMULATED), "s.json")
    for ticket, source in zip(closure.tickets, SIMULATED["tickets"], strict=True):
        assert ticket.payments == tuple(
            MethodAmount(payment["method"], parse_amount(payment["amount"]))
            for payment in source["payments"])
    payments = [payment for ticket in closure.tickets for payment in ticket.payments]
    assert len({id(payment) for payment in payments}) < len(payments)  # equal ones share


def test_equal_payment_amounts_in_other_text_are_not_shared() -> None:
    document = with_payments(CARD, {**CARD, "amount": "4.5"}, CARD)
    first = parse_closure(dumps(document), "s.json").tickets[0].payments
    assert [str(payment.amount) for payment in first] == ["4.50", "4.50", "4.50"]
    assert first[0] is first[2] and first[0] is not first[1]


def test_the_lines_of_a_day_only_jsonschema_passes_are_read_one_by_one() -> None:
    # jsonschema's "$" matches before a final newline, the compiled checks' "\\Z" does not:
    # they refuse the day, jsonschema finds nothing wrong, and the lines are read without them.
    document = with_lines(SALE, {**SALE, "gross": "4.50\n"}, SALE)
    assert not read_in_one_go(document) and jsonschema_passes(document)
    lines = parse_closure(dumps(document), "s.json").tickets[0].lines
    assert lines == (TicketLine(LineKind.SALE, Decimal("10"), Decimal("4.50")),) * 3


def test_equal_amounts_in_other_text_are_not_shared() -> None:
    document = with_lines({"kind": "gift_card", "gross": "5"},
                          {"kind": "gift_card", "gross": "5.0"},
                          {"kind": "sale", "vat_rate": "5.5", "gross": "5.00"},
                          {"kind": "sale", "vat_rate": "5.50", "gross": "5.00"})
    first = parse_closure(dumps(document), "s.json").tickets[0].lines
    assert [str(line.gross) for line in first] == ["5.00", "5.00", "5.00", "5.00"]
    assert [str(line.vat_rate) for line in first[2:]] == ["5.5", "5.50"]
    assert first[0] is not first[1] and first[2] is not first[3]


def unshared(closure: Closure) -> Closure:
    """The closure with a record of its own for every ticket line."""
    return replace(closure, tickets=tuple(
        replace(ticket, lines=tuple(replace(line) for line in ticket.lines))
        for ticket in closure.tickets))


@pytest.mark.parametrize("faults", [frozenset(), frozenset(FAULTS)], ids=["valid", "faults"])
def test_shared_line_records_are_validated_as_their_own_would_be(faults: frozenset[str]) -> None:
    document = generate_closure(integration_id="tpo_s", establishment_id="E",
                                establishment_name="S", business_date=date(2026, 3, 30),
                                number=7, perpetual_before=Decimal("10.00"), faults=faults)
    closure = parse_closure(dumps(document), "s.json")
    findings = validate_closure(closure, Territory.METROPOLE)
    assert findings == validate_closure(unshared(closure), Territory.METROPOLE)
    assert bool(findings) == bool(faults)


def test_a_shared_line_without_exact_cents_is_reported_on_each_row() -> None:
    closure = parse_closure(dumps(SIMULATED), "s.json")
    odd = TicketLine(LineKind.SALE, Decimal("10"), Decimal("3.505"))
    tickets = list(closure.tickets)
    for n in (1, 4):
        tickets[n] = replace(tickets[n], lines=(odd, odd, *tickets[n].lines[1:]))
    broken = replace(closure, tickets=tuple(tickets))
    findings = validate_closure(broken, Territory.METROPOLE)
    assert [(f.field, f.message) for f in findings if f.rule == "exact_money"] == [
        (f"tickets[{n}].lines[{i}].gross", "gross Decimal('3.505') is not an exact amount in cents")
        for n in (1, 4) for i in (0, 1)]
    assert findings == validate_closure(unshared(broken), Territory.METROPOLE)


def _per_ticket_one_by_one(closure: Closure) -> tuple[list[int], dict[str, dict[Decimal, int]]]:
    """Each ticket's lines total in cents, and the tickets at each rate, line by line."""
    totals = []
    per_rate: dict[str, dict[Decimal, int]] = {}
    for ticket in closure.tickets:
        totals.append(sum(int(line.gross * 100) * (-1 if line.kind is LineKind.REFUND else 1)
                          for line in ticket.lines))
        for table, rate in {("sales" if line.kind is LineKind.SALE else "refunds", line.vat_rate)
                            for line in ticket.lines
                            if line.kind in (LineKind.SALE, LineKind.REFUND)}:
            assert rate is not None
            counts = per_rate.setdefault(table, {})
            counts[rate] = counts.get(rate, 0) + 1
    return totals, per_rate


@pytest.mark.parametrize("faults", [frozenset(), frozenset(FAULTS)], ids=["valid", "faults"])
def test_ticket_totals_and_tickets_per_rate_are_those_added_line_by_line(
    faults: frozenset[str],
) -> None:
    document = generate_closure(integration_id="tpo_s", establishment_id="E",
                                establishment_name="S", business_date=date(2026, 3, 30),
                                number=7, perpetual_before=Decimal("10.00"), faults=faults)
    closure = parse_closure(dumps(document), "s.json")
    refund = TicketLine(LineKind.REFUND, Decimal("5.50"), Decimal("2.00"))
    tickets = list(closure.tickets)
    tickets[2] = replace(tickets[2], lines=(*tickets[2].lines, refund, refund))
    tickets[3] = replace(tickets[3], lines=())
    closure = replace(closure, tickets=tuple(tickets))
    totals, per_rate = _LineRecords(closure.tickets).per_ticket()
    expected_totals, expected_per_rate = _per_ticket_one_by_one(closure)
    assert totals == expected_totals and totals[3] == 0
    assert {table: dict(counts) for table, counts in per_rate.items()} == expected_per_rate
    assert per_rate["refunds"][Decimal("5.5")] >= 1


def test_amounts_adding_up_beyond_int64_are_added_exactly_and_make_one_error() -> None:
    closure = parse_closure(dumps(SIMULATED), "s.json")
    top = TicketLine(LineKind.GIFT_CARD, None, Decimal("999999999999.99"))
    count = 100_000  # 10^19 cents in all: past int64's 9.2 × 10^18
    huge = replace(closure, tickets=(replace(closure.tickets[0], lines=(top,) * count),
                                     *closure.tickets[1:]))
    totals, _ = _LineRecords(huge.tickets).per_ticket()
    assert totals[0] == 99_999_999_999_999 * count
    assert [(f.rule, f.field) for f in validate_closure(huge, Territory.METROPOLE)] == [
        ("amount_range", "closure")]


def _inserted(text: str, after: str, insert: str, *, last: bool = False) -> bytes:
    """The day's text with ``insert`` written right after the first (last) ``after``."""
    at = (text.rfind(after) if last else text.find(after)) + len(after)
    assert at >= len(after), after
    return (text[:at] + insert + text[at:]).encode()


DAY_TEXT = dumps(SIMULATED).decode()
DUPLICATED: list[tuple[str, bytes, str]] = [
    ("top", _inserted(DAY_TEXT, "{", '"schema":"x",'), "schema"),
    ("closure", _inserted(DAY_TEXT, '"closure":{', '"number":1,'), "number"),
    ("sales", _inserted(DAY_TEXT, '"sales":[{', '"net":"1.00",'), "net"),
    ("ticket", _inserted(DAY_TEXT, '"lines":[', '],"lines":['), "lines"),
    # a line and a payment otherwise equal to others of the day, which are passed
    ("line", _inserted(DAY_TEXT, '{"kind":"sale",', '"kind":"sale",'), "kind"),
    ("payment", _inserted(DAY_TEXT, '"payments":[{', '"method":"x",', last=True), "method"),
]


@pytest.mark.parametrize(("raw", "key"), [(raw, key) for _, raw, key in DUPLICATED],
                         ids=[name for name, _, _ in DUPLICATED])
def test_a_duplicated_key_is_refused_wherever_it_is(raw: bytes, key: str) -> None:
    assert reading._read(raw, "s.json", reading.LineCache()) is None
    with pytest.raises(ClosureRejected) as refused:
        parse_closure(raw, "s.json")
    assert [(f.rule, f.field) for f in refused.value.findings] == [("json", "$")]
    assert f"duplicated key {key!r}" in refused.value.findings[0].message


@pytest.mark.parametrize("path", ["sales", "tips", "tickets", "tickets.0.lines",
                                  "tickets.0.payments"])
def test_an_object_where_an_array_belongs_is_refused(path: str) -> None:
    # decoded as its pairs, an empty object is an empty tuple: never taken for an array
    document = copy.deepcopy(FEW_TICKETS)
    *parents, last = path.split(".")
    node: Any = document
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[last] = {}
    assert not read_in_one_go(document) and not jsonschema_passes(document)
    with pytest.raises(ClosureRejected) as refused:
        parse_closure(dumps(document), "s.json")
    field = path.replace(".0.", "[0].")
    assert ("schema.type", field) in [(f.rule, f.field) for f in refused.value.findings]


def test_a_line_cache_kept_across_closures_reads_what_a_fresh_one_reads() -> None:
    raw, other = dumps(SIMULATED), dumps(FEW_TICKETS)
    alone = parse_closure(raw, "s.json")
    kept = reading.LineCache()
    assert parse_closure(other, "s.json", kept) == parse_closure(other, "s.json")
    assert kept.lines and kept.payments
    assert parse_closure(raw, "s.json", kept) == alone
    # the lines the first closure showed are shared with the second, not read again
    first = parse_closure(other, "s.json", kept).tickets[0].lines[0]
    assert any(line is first for t in parse_closure(raw, "s.json", kept).tickets
               for line in t.lines)


def test_a_full_line_cache_is_emptied_and_reads_on() -> None:
    raw = dumps(SIMULATED)
    small = reading.LineCache(limit=3)
    assert parse_closure(raw, "s.json", small) == parse_closure(raw, "s.json")
    assert len(small.lines) <= 3 and len(small.payments) <= 3
    with pytest.raises(ValueError, match="limit"):
        reading.LineCache(limit=0)


def test_a_line_cache_keeps_only_what_the_compiled_checks_passed() -> None:
    kept = reading.LineCache()
    broken = with_lines(SALE, {**SALE, "kind": "discount"})
    with pytest.raises(ClosureRejected):
        parse_closure(dumps(broken), "s.json", kept)
    assert all(dict(pairs)["kind"] != "discount" for pairs in kept.lines)
    assert parse_closure(dumps(with_lines(SALE)), "s.json", kept) == parse_closure(
        dumps(with_lines(SALE)), "s.json")

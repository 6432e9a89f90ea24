"""The POS simulator: schema-valid closures satisfying identities 1–8, deterministic, with faults
that break exactly the identity they stand for.

The identities are re-checked here from the document's text with Decimal arithmetic, without
using the project's validator, so that a bug shared by both cannot hide.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from strategies import closures

from toporder_sync.core.accounts import rates_in_force
from toporder_sync.core.model import LineKind, MethodAmount, Territory, Ticket, TicketLine
from toporder_sync.core.money import parse_amount, parse_rate
from toporder_sync.simulator import (
    CARD,
    CASH,
    FAULTS,
    METHODS,
    STALE_RATE,
    UNKNOWN_METHOD,
    VENUES,
    build_from_tickets,
    dumps,
    generate_closure,
    generate_series,
)

REPO = Path(__file__).resolve().parent.parent
SCHEMA_COPY = REPO / "schemas" / "closure-v1.schema.json"
SHARED_SCHEMA = REPO.parent / "shared" / "spec" / "closure-v1.schema.json"
VALIDATOR = Draft202012Validator(
    json.loads(SCHEMA_COPY.read_bytes()), format_checker=Draft202012Validator.FORMAT_CHECKER
)

CENT = Decimal("0.01")
START = date(2026, 3, 23)  # days from here cross the spring DST change (2026-03-29)
TERRITORIES = tuple(Territory)
EVERY_VENUE_AND_TERRITORY = [(v, t) for v in VENUES for t in TERRITORIES]


def closure(
    business_date: date = date(2026, 11, 27),
    venue: str = "restaurant",
    territory: Territory = Territory.METROPOLE,
    faults: frozenset[str] = frozenset(),
    integration_id: str = "tpo_demo_petit_zinc",
) -> dict[str, Any]:
    return generate_closure(
        integration_id=integration_id,
        establishment_id="TOP-1042",
        establishment_name="Le Petit Zinc",
        business_date=business_date,
        venue=venue,
        territory=territory,
        number=412,
        perpetual_before=Decimal("123456.78"),
        faults=faults,
    )


def days(count: int, start: date = START) -> list[date]:
    return [start + timedelta(days=i) for i in range(count)]


def schema_errors(document: dict[str, Any]) -> list[str]:
    """Errors of the document as sent (through ``dumps``), against the repository's copy."""
    sent = json.loads(dumps(document))
    return [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(sent)]


def total(amounts: Iterable[Decimal]) -> Decimal:
    return sum(amounts, Decimal("0.00"))


def sums_by(pairs: Iterable[tuple[Any, Decimal]]) -> dict[Any, Decimal]:
    sums: dict[Any, Decimal] = defaultdict(lambda: Decimal("0.00"))
    for key, amount in pairs:
        sums[key] += amount
    return dict(sums)


def broken_identities(
    document: dict[str, Any], territory: Territory, previous: dict[str, Any] | None = None
) -> set[int]:
    """The identities of closure-v1.md (1 to 8) that ``document`` breaks."""
    amount = parse_amount
    broken: set[int] = set()
    tickets = document.get("tickets")
    vat_lines = [("sale", line) for line in document["sales"]]
    vat_lines += [("refund", line) for line in document.get("refunds", [])]
    for kind, line in vat_lines:
        rate = parse_rate(line["vat_rate"])
        net, vat, gross = amount(line["net"]), amount(line["vat"]), amount(line["gross"])
        if net + vat != gross:
            broken.add(1)
        computed = net * rate / 100
        if tickets is None:
            tolerance = max(CENT, abs(computed) / 100)
        else:
            at_rate = sum(
                1
                for t in tickets
                if any(x["kind"] == kind and parse_rate(x["vat_rate"]) == rate for x in t["lines"])
            )
            tolerance = CENT * at_rate
        if abs(vat - computed) > tolerance:
            broken.add(2)
        if rate not in rates_in_force(territory):
            broken.add(3)

    sales = total(amount(line["gross"]) for line in document["sales"])
    refunds = total(amount(line["gross"]) for line in document.get("refunds", []))
    gift_cards = amount(document.get("gift_cards", {"sold": "0"})["sold"])
    tips = total(amount(t["amount"]) for t in document.get("tips", []))
    payments = sums_by((p["method"], amount(p["amount"])) for p in document["payments"])
    if total(payments.values()) != sales - refunds + gift_cards + tips:
        broken.add(4)
    grand_total = document["closure"]["grand_total"]
    if amount(grand_total["period"]) != sales - refunds:
        broken.add(5)
    if previous is not None:
        number = document["closure"]["number"]
        before = amount(previous["closure"]["grand_total"]["perpetual"])
        if number != previous["closure"]["number"] + 1 or amount(
            grand_total["perpetual"]
        ) != before + amount(grand_total["period"]):
            broken.add(6)
    if tickets is not None:
        lines = [line for t in tickets for line in t["lines"]]
        by_rate = sums_by(
            ((x["kind"], parse_rate(x["vat_rate"])), amount(x["gross"]))
            for x in lines
            if x["kind"] in ("sale", "refund")
        )
        declared = sums_by(
            ((kind, parse_rate(line["vat_rate"])), amount(line["gross"]))
            for kind, line in vat_lines
        )
        by_kind = sums_by((x["kind"], amount(x["gross"])) for x in lines)
        by_method = sums_by(
            (p["method"], amount(p["amount"])) for t in tickets for p in t["payments"]
        )
        if (
            by_rate != declared
            or by_kind.get("gift_card", 0) != gift_cards
            or by_kind.get("tip", 0) != tips
            or by_method != payments
        ):
            broken.add(7)
    cash_count = document.get("cash_count")
    if cash_count is not None and amount(cash_count["expected"]) != payments.get(
        cash_count["method"], 0
    ):
        broken.add(8)
    return broken


def unbalanced_tickets(document: dict[str, Any]) -> list[tuple[str, Decimal]]:
    """Tickets whose payments do not add up to their lines, with payments less lines."""
    result = []
    for ticket in document["tickets"]:
        due = total(
            -parse_amount(x["gross"]) if x["kind"] == "refund" else parse_amount(x["gross"])
            for x in ticket["lines"]
        )
        paid = total(parse_amount(p["amount"]) for p in ticket["payments"])
        if paid != due:
            result.append((ticket["number"], paid - due))
    return result


# --- the contract's schema ---------------------------------------------------------------


# What the copy adds to the contract: the bounds of ``core.bounds`` (docs/reliability.md).
_BOUND_KEYWORDS = frozenset({"$comment", "pattern", "maximum"})


def _without_added_bounds(copy: Any, contract: Any) -> Any:
    """``copy`` less the bound keywords it has where the contract has none."""
    if isinstance(copy, dict) and isinstance(contract, dict):
        return {key: _without_added_bounds(value, contract.get(key))
                for key, value in copy.items()
                if key in contract or key not in _BOUND_KEYWORDS}
    if isinstance(copy, list) and isinstance(contract, list) and len(copy) == len(contract):
        return [_without_added_bounds(c, s) for c, s in zip(copy, contract, strict=True)]
    return copy


def test_schema_copy_is_the_contract_plus_the_bounds_at_the_door() -> None:
    if not SHARED_SCHEMA.exists():
        pytest.skip("the shared spec is not beside this repository")
    contract = json.loads(SHARED_SCHEMA.read_text(encoding="utf-8"))
    copy = json.loads(SCHEMA_COPY.read_text(encoding="utf-8"))
    assert _without_added_bounds(copy, contract) == contract
    assert copy != contract, "the copy carries the bounds (test_core_closure checks which)"


def test_the_validator_checks_formats() -> None:
    document = closure()
    document["closure"]["business_date"] = "2026-02-30"
    assert schema_errors(document)


@pytest.mark.parametrize(("venue", "territory"), EVERY_VENUE_AND_TERRITORY)
def test_closures_are_schema_valid(venue: str, territory: Territory) -> None:
    # jsonschema takes a third of a second on a full day: two days, across the autumn DST night.
    for day in days(2, date(2026, 10, 24)):
        assert schema_errors(closure(day, venue, territory)) == []


# --- identities ----------------------------------------------------------------------------


@pytest.mark.parametrize(("venue", "territory"), EVERY_VENUE_AND_TERRITORY)
def test_every_identity_holds(venue: str, territory: Territory) -> None:
    for day in days(10):
        document = closure(day, venue, territory)
        assert broken_identities(document, territory) == set(), day
        assert unbalanced_tickets(document) == [], day


def shift(container: dict[str, Any], key: str, by: str) -> None:
    container[key] = str(parse_amount(container[key]) + Decimal(by))


def break_net(d: dict[str, Any]) -> None:
    shift(d["sales"][0], "net", "1.00")


def break_vat_split(d: dict[str, Any]) -> None:
    # Far past the ±0.01 per ticket a rate of a hundred-odd tickets allows; gross unchanged.
    shift(d["sales"][0], "net", "-5.00")
    shift(d["sales"][0], "vat", "5.00")


def break_period(d: dict[str, Any]) -> None:
    shift(d["closure"]["grand_total"], "period", "1.00")


def break_ticket_detail(d: dict[str, Any]) -> None:
    shift(d["tickets"][0]["lines"][0], "gross", "1.00")


def break_cash_count(d: dict[str, Any]) -> None:
    shift(d["cash_count"], "expected", "1.00")


@pytest.mark.parametrize(
    ("mutate", "identity"),
    [
        (break_net, 1),
        (break_vat_split, 2),
        (break_period, 5),
        (break_ticket_detail, 7),
        (break_cash_count, 8),
    ],
)
def test_the_checker_sees_each_break(
    mutate: Callable[[dict[str, Any]], None], identity: int
) -> None:
    # Faults show it sees 3, 4 and 6; this shows the other checks are not vacuous.
    document = closure()
    mutate(document)
    assert broken_identities(document, Territory.METROPOLE) == {identity}


def test_vat_is_split_once_per_ticket_and_rate() -> None:
    # Three 0.03 lines at 20 %: split line by line, VAT would be 0.03 for a computed 0.012,
    # past the ±0.01 a single ticket allows; split on the ticket's 0.09 it is 0.01.
    at = datetime(2026, 11, 27, 12, tzinfo=UTC)
    lines = tuple(TicketLine(LineKind.SALE, Decimal("20"), Decimal("0.03")) for _ in range(3))
    ticket = Ticket("1", at, lines, (MethodAmount(CARD, Decimal("0.09")),))
    document = build_from_tickets(
        [ticket],
        integration_id="i",
        establishment_id="e",
        establishment_name="n",
        number=1,
        business_date=at.date(),
        opened_at=at,
        closed_at=at,
        perpetual_before=Decimal("0.00"),
    )
    assert document["sales"] == [{"vat_rate": "20", "net": "0.08", "vat": "0.01", "gross": "0.09"}]
    assert broken_identities(document, Territory.METROPOLE) == set()


def test_tips_go_to_the_largest_payment_of_their_ticket() -> None:
    at = datetime(2026, 11, 27, 21, tzinfo=UTC)
    lines = (
        TicketLine(LineKind.SALE, Decimal("10"), Decimal("40.00")),
        TicketLine(LineKind.TIP, None, Decimal("5.00")),
    )
    payments = (MethodAmount("Swile", Decimal("25.00")), MethodAmount(CARD, Decimal("20.00")))
    document = build_from_tickets(
        [Ticket("1", at, lines, payments)],
        integration_id="i",
        establishment_id="e",
        establishment_name="n",
        number=1,
        business_date=at.date(),
        opened_at=at,
        closed_at=at,
        perpetual_before=Decimal("0.00"),
    )
    assert document["tips"] == [{"method": "Swile", "amount": "5.00"}]
    assert broken_identities(document, Territory.METROPOLE) == set()


@pytest.mark.parametrize("territory", TERRITORIES)
@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_drawn_closures_satisfy_every_identity(territory: Territory, data: st.DataObject) -> None:
    document = data.draw(closures(territory=territory))
    assert schema_errors(document) == []
    assert broken_identities(document, territory) == set()
    assert unbalanced_tickets(document) == []


# --- realism -------------------------------------------------------------------------------

EXPECTED_RATES = {
    ("restaurant", Territory.METROPOLE): {"10", "20"},
    ("restaurant", Territory.CORSE): {"10", "20"},
    ("restaurant", Territory.DOM): {"8.5", "2.1"},
    ("bakery", Territory.METROPOLE): {"5.5", "10", "20"},
    ("bakery", Territory.CORSE): {"2.1", "10", "20"},
    ("bakery", Territory.DOM): {"2.1", "8.5"},
    ("bar", Territory.METROPOLE): {"20", "10", "5.5"},
    ("bar", Territory.CORSE): {"20", "10", "2.1"},
    ("bar", Territory.DOM): {"8.5", "1.75"},
    ("shop", Territory.METROPOLE): {"20", "5.5", "2.1"},
    ("shop", Territory.CORSE): {"20", "2.1", "0.9", "13"},
    ("shop", Territory.DOM): {"8.5", "2.1", "1.05"},
}


@pytest.mark.parametrize(("venue", "territory"), EVERY_VENUE_AND_TERRITORY)
def test_rates_are_the_venues_mix(venue: str, territory: Territory) -> None:
    seen = {line["vat_rate"] for day in days(7) for line in closure(day, venue, territory)["sales"]}
    assert seen == EXPECTED_RATES[(venue, territory)]


TICKETS_PER_DAY = {
    "restaurant": (60, 180),
    "bakery": (150, 400),
    "bar": (80, 250),
    "shop": (30, 120),
}


@pytest.mark.parametrize("venue", VENUES)
def test_business_day_hours_and_ticket_counts(venue: str) -> None:
    after_midnight = venue in ("restaurant", "bar")
    for day in days(14):
        document = closure(day, venue)
        opened_at = datetime.fromisoformat(document["closure"]["opened_at"])
        closed_at = datetime.fromisoformat(document["closure"]["closed_at"])
        assert opened_at.date() == day
        assert closed_at.date() == day + timedelta(days=1 if after_midnight else 0)
        times = [datetime.fromisoformat(t["closed_at"]) for t in document["tickets"]]
        assert times == sorted(times)
        assert opened_at <= times[0] and times[-1] <= closed_at
        low, high = TICKETS_PER_DAY[venue]
        assert low <= len(document["tickets"]) <= high


def test_payments_look_like_a_real_day() -> None:
    documents = [closure(day, venue) for day in days(14) for venue in VENUES]
    methods = {p["method"] for d in documents for p in d["payments"]}
    assert methods == set(METHODS)
    tickets = [t for d in documents for t in d["tickets"]]
    kinds = {x["kind"] for t in tickets for x in t["lines"]}
    assert kinds == {kind.value for kind in LineKind}
    # Change handed back in cash, and bills split between a meal voucher and a card.
    assert any(
        p["method"] == CASH and p["amount"].startswith("-") for t in tickets for p in t["payments"]
    )
    assert any([p["method"] for p in t["payments"]] == ["Swile", CARD] for t in tickets)
    counts = [d["cash_count"] for d in documents]
    assert all(parse_amount(c["counted"]) >= 0 for c in counts)
    off = [c for c in counts if c["counted"] != c["expected"]]
    assert 0 < len(off) < len(counts) / 2
    assert all(abs(parse_amount(c["counted"]) - parse_amount(c["expected"])) <= 5 for c in off)


# --- determinism and the wire format -------------------------------------------------------


def test_same_inputs_give_identical_bytes() -> None:
    assert dumps(closure()) == dumps(closure())
    assert dumps(closure()) != dumps(closure(integration_id="tpo_other"))
    assert dumps(closure()) != dumps(closure(date(2026, 11, 28)))


def test_menu_prices_stay_put_from_day_to_day() -> None:
    def prices(day: date) -> set[str]:
        document = closure(day, "shop")
        return {x["gross"] for t in document["tickets"] for x in t["lines"] if x["kind"] == "sale"}

    # A shop's single items repeat across days: the menu is the establishment's, not the day's.
    assert len(prices(date(2026, 11, 27)) & prices(date(2026, 11, 28))) > 10


def test_dumps_is_utf8_json_with_string_amounts() -> None:
    document = closure()
    raw = dumps(document)
    assert "Espèces".encode() in raw
    assert json.loads(raw.decode("utf-8")) == document
    assert all(isinstance(p["amount"], str) for p in json.loads(raw)["payments"])


def test_a_busy_saturday_has_more_than_a_thousand_ticket_lines() -> None:
    # The size the benchmarks use (bench/): how fast it is built is measured there, not here.
    document = closure(date(2026, 1, 24), integration_id="tpo_demo")
    assert sum(len(t["lines"]) for t in document["tickets"]) >= 1000


# --- series --------------------------------------------------------------------------------


def test_series_keeps_numbers_and_perpetual_total() -> None:
    series = generate_series(
        integration_id="tpo_demo_bar",
        establishment_id="TOP-7",
        establishment_name="Le Comptoir",
        start=START,
        days=10,
        venue="bar",
        territory=Territory.CORSE,
        first_number=101,
        perpetual_start=Decimal("25000.00"),
    )
    assert [d["closure"]["number"] for d in series] == list(range(101, 111))
    assert [d["closure"]["business_date"] for d in series] == [d.isoformat() for d in days(10)]
    first = series[0]["closure"]["grand_total"]
    assert parse_amount(first["perpetual"]) == Decimal("25000.00") + parse_amount(first["period"])
    for previous, document in pairwise(series):
        assert broken_identities(document, Territory.CORSE, previous) == set()
    # A day the register skipped breaks continuity.
    assert broken_identities(series[2], Territory.CORSE, series[0]) == {6}


def test_series_injects_faults_on_their_day_only() -> None:
    faulty_day = START + timedelta(days=1)
    series = generate_series(
        integration_id="tpo_demo_petit_zinc",
        establishment_id="TOP-1042",
        establishment_name="Le Petit Zinc",
        start=START,
        days=3,
        faults_by_day={faulty_day: frozenset({"unbalanced"})},
    )
    assert [broken_identities(d, Territory.METROPOLE) for d in series] == [set(), {4}, set()]


# --- faults --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "breaks"), [("unbalanced", {4}), ("wrong_vat_rate", {3}), ("unknown_method", set())]
)
@pytest.mark.parametrize("venue", VENUES)
def test_a_fault_breaks_exactly_its_identity(venue: str, fault: str, breaks: set[int]) -> None:
    assert schema_errors(closure(START, venue, faults=frozenset({fault}))) == []
    for day in days(5):
        clean = closure(day, venue)
        faulty = closure(day, venue, faults=frozenset({fault}))
        assert broken_identities(faulty, Territory.METROPOLE) == breaks
        # The rest of the day is the same day.
        assert [t["closed_at"] for t in faulty["tickets"]] == [
            t["closed_at"] for t in clean["tickets"]
        ]


def test_unbalanced_is_one_card_payment_a_few_euros_short() -> None:
    for day in days(5):
        document = closure(day, faults=frozenset({"unbalanced"}))
        [(number, difference)] = unbalanced_tickets(document)
        ticket = next(t for t in document["tickets"] if t["number"] == number)
        assert [p["method"] for p in ticket["payments"]] == [CARD]
        assert difference in {Decimal(-euros) for euros in range(1, 10)}


def test_wrong_vat_rate_is_a_stale_rate_with_consistent_amounts() -> None:
    document = closure(faults=frozenset({"wrong_vat_rate"}))
    [stale] = [line for line in document["sales"] if parse_rate(line["vat_rate"]) == STALE_RATE]
    assert STALE_RATE not in rates_in_force(Territory.METROPOLE)
    net = parse_amount(stale["net"])
    assert abs(parse_amount(stale["vat"]) - net * STALE_RATE / 100) <= CENT


def test_unknown_method_is_paid_with_lydia() -> None:
    document = closure(faults=frozenset({"unknown_method"}))
    assert UNKNOWN_METHOD in {p["method"] for p in document["payments"]}
    assert unbalanced_tickets(document) == []


def test_faults_combine() -> None:
    document = closure(faults=frozenset(FAULTS))
    assert broken_identities(document, Territory.METROPOLE) == {3, 4}


def test_unknown_venue_and_fault_are_refused() -> None:
    with pytest.raises(ValueError, match="venue"):
        closure(venue="casino")
    with pytest.raises(ValueError, match="faults"):
        closure(faults=frozenset({"power_cut"}))

"""A deterministic Toporder POS: daily closures in the v1 format, built from ticket detail.

What it promises:

* every closure is a JSON-ready ``dict`` (amounts are strings such as ``"1100.00"``) valid
  against ``closure-v1.schema.json`` and, without faults, satisfying identities 1 to 8 of
  ``closure-v1.md``: the aggregates are computed from the tickets by ``build_from_tickets``,
  never drawn on their own, so they cannot disagree with the detail;
* the same (integration id, business date) and arguments give byte-identical output: the
  random source is seeded through SHA-256 (``hash()`` is salted per process), and the
  establishment's menu is seeded by (integration id, venue) so prices stay put from day to day;
* ``generate_series`` numbers closures +1 and carries the perpetual grand total (identity 6);
* money never goes through a float: amounts are drawn as integer cents, then held as
  ``Decimal``.

The venues and their tickets are ``simulator.till``'s; the faults a closure can carry are
``simulator.faults``'s.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from toporder_sync.core.model import LineKind, Territory, Ticket
from toporder_sync.core.money import ZERO, format_rate, parse_amount, quantize, require_money
from toporder_sync.simulator.faults import FAULTS, inject
from toporder_sync.simulator.till import (
    CASH,
    PROFILES,
    RATES,
    VENUES,
    Till,
    draw_menu,
    from_cents,
    seeded_random,
)

SCHEMA_TAG = "toporder.closure/v1"

# Drawer counts are right three times out of four; otherwise a few euros or cents off, more
# often short than over.
_DRAWER_ERROR_PERCENT = 25
_DRAWER_ERROR_CENTS = (-500, 300)


@dataclass(frozen=True, slots=True)
class DrawerCount:
    """The cash drawer counted at closing: ``counted`` is the method's payments + ``difference``."""

    method: str
    difference: Decimal


def _amount(value: Decimal) -> str:
    return format(require_money(value), "f")


def _moment(value: datetime) -> str:
    return value.isoformat(timespec="seconds")


def build_from_tickets(
    tickets: Sequence[Ticket],
    *,
    integration_id: str,
    establishment_id: str,
    establishment_name: str,
    number: int,
    business_date: date,
    opened_at: datetime,
    closed_at: datetime,
    perpetual_before: Decimal,
    drawer: DrawerCount | None = None,
) -> dict[str, Any]:
    """The closure document whose every total is computed from ``tickets``.

    VAT is split once per ticket and rate, ``net = quantize(gross / (1 + rate / 100))``, then
    summed: each ticket then adds at most 0.005 × (1 + rate) < 0.01 of rounding error to a
    rate's VAT, so identity 2 holds within its ±0.01-per-ticket tolerance (splitting each line
    would not: several lines at one rate on a ticket could add up past it). A ticket's tips are
    ascribed to its largest payment's method (the first one on a tie), since ticket lines carry
    no method. Tickets are aggregated as given, balanced or not: checking them is validation's
    job, and the ``unbalanced`` fault relies on it.
    """
    sales: dict[Decimal, list[Decimal]] = {}
    refunds: dict[Decimal, list[Decimal]] = {}
    payments: dict[str, Decimal] = {}
    tips: dict[str, Decimal] = {}
    gift_cards = ZERO
    ticket_documents = []
    for ticket in tickets:
        by_rate: dict[tuple[LineKind, Decimal], Decimal] = {}
        tip = ZERO
        for line in ticket.lines:
            if line.kind is LineKind.GIFT_CARD:
                gift_cards += line.gross
            elif line.kind is LineKind.TIP:
                tip += line.gross
            else:
                if line.vat_rate is None:
                    raise ValueError(f"ticket {ticket.number}: a {line.kind} line needs a rate")
                key = (line.kind, line.vat_rate)
                by_rate[key] = by_rate.get(key, ZERO) + line.gross
        for (kind, rate), gross in by_rate.items():
            table = sales if kind is LineKind.SALE else refunds
            net = quantize(gross / (1 + rate / 100))
            totals = table.setdefault(rate, [ZERO, ZERO])
            totals[0] += net
            totals[1] += gross
        for payment in ticket.payments:
            payments[payment.method] = payments.get(payment.method, ZERO) + payment.amount
        if tip:
            if not ticket.payments:
                raise ValueError(f"ticket {ticket.number} has a tip but no payment")
            method = max(ticket.payments, key=lambda payment: payment.amount).method
            tips[method] = tips.get(method, ZERO) + tip
        ticket_documents.append(_ticket_document(ticket))

    period = sum((gross for _, gross in sales.values()), ZERO) - sum(
        (gross for _, gross in refunds.values()), ZERO
    )
    document: dict[str, Any] = {
        "schema": SCHEMA_TAG,
        "integration_id": integration_id,
        "establishment": {"id": establishment_id, "name": establishment_name},
        "closure": {
            "number": number,
            "business_date": business_date.isoformat(),
            "opened_at": _moment(opened_at),
            "closed_at": _moment(closed_at),
            "currency": "EUR",
            "grand_total": {
                "period": _amount(period),
                "perpetual": _amount(perpetual_before + period),
            },
        },
        "sales": _vat_lines(sales),
    }
    if refunds:
        document["refunds"] = _vat_lines(refunds)
    document["payments"] = _method_amounts(payments.items())
    if tips:
        document["tips"] = _method_amounts(tips.items())
    if gift_cards:
        document["gift_cards"] = {"sold": _amount(gift_cards)}
    if drawer is not None:
        expected = payments.get(drawer.method, ZERO)
        document["cash_count"] = {
            "method": drawer.method,
            "expected": _amount(expected),
            "counted": _amount(expected + drawer.difference),
        }
    document["tickets"] = ticket_documents
    return document


def _vat_lines(table: Mapping[Decimal, list[Decimal]]) -> list[dict[str, str]]:
    return [
        {
            "vat_rate": format_rate(rate),
            "net": _amount(net),
            "vat": _amount(gross - net),
            "gross": _amount(gross),
        }
        for rate, (net, gross) in sorted(table.items())
    ]


def _method_amounts(pairs: Iterable[tuple[str, Decimal]]) -> list[dict[str, str]]:
    return [{"method": method, "amount": _amount(amount)} for method, amount in pairs]


def _ticket_document(ticket: Ticket) -> dict[str, Any]:
    lines = []
    for line in ticket.lines:
        rate = {} if line.vat_rate is None else {"vat_rate": format_rate(line.vat_rate)}
        lines.append({"kind": line.kind.value, **rate, "gross": _amount(line.gross)})
    return {
        "number": ticket.number,
        "closed_at": _moment(ticket.closed_at),
        "lines": lines,
        "payments": _method_amounts((p.method, p.amount) for p in ticket.payments),
    }


def _local(business_date: date, minutes: int, seconds: int, tz: ZoneInfo) -> datetime:
    """The wall-clock time ``minutes`` after midnight of the business date.

    Wall-clock arithmetic keeps "00:40" on the next calendar day even on a DST night; the round
    trip through UTC turns a time of the spring gap (02:30) into the instant it stands for.
    """
    wall = datetime.combine(business_date, time(), tzinfo=tz) + timedelta(
        minutes=minutes, seconds=seconds
    )
    return wall.astimezone(UTC).astimezone(tz)


def generate_closure(
    *,
    integration_id: str,
    establishment_id: str,
    establishment_name: str,
    business_date: date,
    venue: str = "restaurant",
    territory: Territory = Territory.METROPOLE,
    number: int,
    perpetual_before: Decimal,
    timezone: str = "Europe/Paris",
    faults: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """One business day of ``venue`` closed as Z ``number``, with ``faults`` injected."""
    if venue not in PROFILES:
        raise ValueError(f"unknown venue {venue!r}; expected one of {', '.join(VENUES)}")
    unknown = faults - set(FAULTS)
    if unknown:
        raise ValueError(f"unknown faults {sorted(unknown)}; expected among {', '.join(FAULTS)}")
    if number < 1:
        raise ValueError(f"a closure number starts at 1, not {number}")
    profile = PROFILES[venue]
    tz = ZoneInfo(timezone)
    day = business_date.isoformat()
    rng = seeded_random("closure", integration_id, day)
    menu = draw_menu(profile, seeded_random("menu", integration_id, venue), RATES[territory])
    till = Till(rng, profile, menu)

    count = rng.randint(*profile.tickets)
    if business_date.weekday() in profile.busy_days:
        count = max(count, rng.randint(*profile.tickets))
    opened_at = _local(business_date, rng.randint(*profile.opens), rng.randrange(60), tz)
    closed_at = _local(business_date, rng.randint(*profile.closes), rng.randrange(60), tz)
    tickets = []
    for index, (minutes, seconds) in enumerate(sorted(till.moment() for _ in range(count)), 1):
        lines, payments = till.ticket()
        tickets.append(
            Ticket(
                number=f"{number}-{index:04d}",
                closed_at=_local(business_date, minutes, seconds, tz),
                lines=lines,
                payments=payments,
            )
        )
    tickets = inject(faults, tickets, integration_id, day)

    cash = sum((p.amount for t in tickets for p in t.payments if p.method == CASH), ZERO)
    difference = ZERO
    if rng.randrange(100) < _DRAWER_ERROR_PERCENT:
        # Never count less than an empty drawer.
        difference = max(from_cents(rng.randint(*_DRAWER_ERROR_CENTS)), -cash)
    return build_from_tickets(
        tickets,
        integration_id=integration_id,
        establishment_id=establishment_id,
        establishment_name=establishment_name,
        number=number,
        business_date=business_date,
        opened_at=opened_at,
        closed_at=closed_at,
        perpetual_before=perpetual_before,
        drawer=DrawerCount(CASH, difference),
    )


def generate_series(
    *,
    integration_id: str,
    establishment_id: str,
    establishment_name: str,
    start: date,
    days: int,
    venue: str = "restaurant",
    territory: Territory = Territory.METROPOLE,
    first_number: int = 1,
    perpetual_start: Decimal = ZERO,
    timezone: str = "Europe/Paris",
    faults_by_day: Mapping[date, frozenset[str]] | None = None,
) -> list[dict[str, Any]]:
    """``days`` consecutive closures from ``start``: numbers +1, perpetual total carried over."""
    closures = []
    perpetual = perpetual_start
    for offset in range(days):
        business_date = start + timedelta(days=offset)
        closure = generate_closure(
            integration_id=integration_id,
            establishment_id=establishment_id,
            establishment_name=establishment_name,
            business_date=business_date,
            venue=venue,
            territory=territory,
            number=first_number + offset,
            perpetual_before=perpetual,
            timezone=timezone,
            faults=(faults_by_day or {}).get(business_date, frozenset()),
        )
        perpetual = parse_amount(closure["closure"]["grand_total"]["perpetual"])
        closures.append(closure)
    return closures


def dumps(document: Mapping[str, Any]) -> bytes:
    """The closure as Toporder sends it: compact UTF-8 JSON, non-ASCII characters kept as is."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

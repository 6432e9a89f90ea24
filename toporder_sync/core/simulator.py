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

Venues sell a plausible mix: a restaurant food at 10 % and alcohol at 20 %, a bakery bread at
5.5 % with some 10 % and 20 %, a bar alcohol at 20 % and soft drinks at 10 %, a shop goods at
20 % with groceries at 5.5 % and newspapers at 2.1 %; in Corse and the DOM the same goods take
the rates of those territories (accounting-rules.md), e.g. 13 % for petroleum products and
0.9 % for newspapers in Corse. The mix is plausible, not tax advice; every rate used is one in
force in the territory.

``FAULTS`` inject the errors a real POS makes, each breaking one identity only:

* ``unbalanced``: the largest ticket's payment is replaced by one card payment a few whole
  euros short. Ticket detail is kept and still adds up to the totals (identity 7 holds), so
  only identity 4 breaks, and that ticket's own payments fall short of its lines;
* ``wrong_vat_rate``: a few sale lines are priced at 19.6 %, a rate no longer in force, with
  amounts consistent at that rate: only identity 3 breaks;
* ``unknown_method``: a few tickets are paid in full with "Lydia", a method no default rule
  recognises: every identity holds, the day is posted with a warning;
* ``renamed_method``: the bank card method was renamed in the register that day ("Carte
  Bancaire" became "Carte bancaire"), as happens when a manager edits the settings: every
  identity holds, but an exact mapping of the old name no longer matches (a near miss).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from itertools import accumulate
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from toporder_sync.core.model import LineKind, MethodAmount, Territory, Ticket, TicketLine
from toporder_sync.core.money import ZERO, format_rate, parse_amount, quantize, require_money

SCHEMA_TAG = "toporder.closure/v1"

# Payment methods as Toporder clients name them in their register.
CARD = "Carte Bancaire"
CASH = "Espèces"
CHEQUE = "Chèque"
SWILE = "Swile"
EDENRED = "Edenred"
CONECS = "Conecs"
PAPER_VOUCHER = "Ticket Restaurant"
GIFT_CARD = "Carte Cadeau"
UBER_EATS = "Uber Eats"
DELIVEROO = "Deliveroo"
METHODS: tuple[str, ...] = (
    CARD, CASH, CHEQUE, SWILE, EDENRED, CONECS, PAPER_VOUCHER, GIFT_CARD, UBER_EATS, DELIVEROO,
)
UNKNOWN_METHOD = "Lydia"
RENAMED_CARD = "Carte bancaire"
STALE_RATE = Decimal("19.6")

FAULTS: tuple[str, ...] = ("unbalanced", "wrong_vat_rate", "unknown_method", "renamed_method")

# Meal-voucher cards may pay at most 25 € a day (Code du travail, R. 3262-10); the rest of the
# bill goes on a bank card. Paper vouchers give no change, so they never pay more than the bill.
_MEAL_VOUCHER_DAILY_CAP = 2500
_MEAL_VOUCHER_CARDS = frozenset({SWILE, EDENRED, CONECS})
_PAPER_VOUCHER_FACES = (800, 900, 1000, 1100)


class _Goods(Enum):
    MEAL = "meal"  # food and soft drinks consumed on the premises
    ALCOHOL = "alcohol"
    TAKEAWAY = "takeaway"  # prepared food sold to take away
    STAPLE = "staple"  # bread, pastries, groceries
    GENERAL = "general"  # goods at the normal rate: confectionery, gifts, hygiene
    PRESS = "press"
    SHOW = "show"  # entry to a live show
    FUEL = "fuel"  # petroleum products: lamp oil, gas cartridges


_M, _C, _D = Territory.METROPOLE, Territory.CORSE, Territory.DOM


def _rates(**by_goods: str) -> Mapping[_Goods, Decimal]:
    return MappingProxyType({_Goods[name.upper()]: Decimal(r) for name, r in by_goods.items()})


_RATES: Mapping[Territory, Mapping[_Goods, Decimal]] = MappingProxyType(
    {
        _M: _rates(meal="10", alcohol="20", takeaway="10", staple="5.5", general="20",
                   press="2.1", show="5.5", fuel="20"),
        _C: _rates(meal="10", alcohol="20", takeaway="10", staple="2.1", general="20",
                   press="0.9", show="2.1", fuel="13"),
        _D: _rates(meal="8.5", alcohol="8.5", takeaway="2.1", staple="2.1", general="8.5",
                   press="1.05", show="1.75", fuel="8.5"),
    }
)


@dataclass(frozen=True, slots=True)
class _Section:
    """A part of the menu: ``items`` prices drawn once per establishment, in cents."""

    goods: _Goods
    items: int
    low: int
    high: int
    step: int
    weight: int


@dataclass(frozen=True, slots=True)
class _Profile:
    """How a venue trades. Times are minutes after midnight of the business date (past 1440:
    the next calendar day); rush windows start after the latest opening and end before the
    earliest closing, so every ticket falls within the business day."""

    tickets: tuple[int, int]
    busy_days: frozenset[int]
    opens: tuple[int, int]
    closes: tuple[int, int]
    rushes: tuple[tuple[int, int, int], ...]
    lines: tuple[int, int]
    sections: tuple[_Section, ...]
    methods: tuple[tuple[str, int], ...]
    tip_percent: int
    refund_permille: int
    gift_card_permille: int


_PROFILES: Mapping[str, _Profile] = MappingProxyType(
    {
        "restaurant": _Profile(
            tickets=(60, 180),
            busy_days=frozenset({4, 5}),
            opens=(660, 705),
            closes=(1450, 1530),
            rushes=((720, 870, 45), (1170, 1410, 55)),
            lines=(1, 14),
            sections=(
                _Section(_Goods.MEAL, 8, 1400, 2900, 50, 30),
                _Section(_Goods.MEAL, 8, 600, 1200, 50, 25),
                _Section(_Goods.MEAL, 6, 220, 550, 10, 20),
                _Section(_Goods.ALCOHOL, 6, 450, 950, 50, 20),
                _Section(_Goods.ALCOHOL, 4, 2400, 5200, 100, 4),
                _Section(_Goods.TAKEAWAY, 3, 450, 900, 50, 1),
            ),
            methods=(
                (CARD, 55), (CASH, 10), (SWILE, 8), (EDENRED, 5), (CONECS, 3),
                (PAPER_VOUCHER, 5), (CHEQUE, 1), (GIFT_CARD, 2), (UBER_EATS, 6), (DELIVEROO, 5),
            ),
            tip_percent=12,
            refund_permille=3,
            gift_card_permille=4,
        ),
        "bakery": _Profile(
            tickets=(150, 400),
            busy_days=frozenset({5, 6}),
            opens=(390, 415),
            closes=(1185, 1215),
            rushes=((420, 570, 40), (690, 840, 35), (990, 1170, 25)),
            lines=(1, 5),
            sections=(
                _Section(_Goods.STAPLE, 6, 110, 480, 10, 45),
                _Section(_Goods.STAPLE, 6, 110, 260, 10, 25),
                _Section(_Goods.TAKEAWAY, 5, 450, 950, 50, 15),
                _Section(_Goods.GENERAL, 4, 250, 1500, 50, 8),
                _Section(_Goods.MEAL, 3, 150, 300, 10, 7),
            ),
            methods=(
                (CARD, 48), (CASH, 42), (SWILE, 4), (PAPER_VOUCHER, 2), (EDENRED, 2), (CONECS, 2),
            ),
            tip_percent=0,
            refund_permille=1,
            gift_card_permille=1,
        ),
        "bar": _Profile(
            tickets=(80, 250),
            busy_days=frozenset({3, 4, 5}),
            opens=(960, 1015),
            closes=(1515, 1590),
            rushes=((1020, 1200, 30), (1200, 1500, 70)),
            lines=(1, 6),
            sections=(
                _Section(_Goods.ALCOHOL, 8, 350, 900, 50, 45),
                _Section(_Goods.ALCOHOL, 6, 900, 1400, 50, 20),
                _Section(_Goods.MEAL, 6, 200, 500, 10, 20),
                _Section(_Goods.MEAL, 4, 600, 1800, 100, 12),
                _Section(_Goods.SHOW, 2, 500, 1500, 100, 3),
            ),
            methods=((CARD, 74), (CASH, 24), (GIFT_CARD, 2)),
            tip_percent=8,
            refund_permille=2,
            gift_card_permille=1,
        ),
        "shop": _Profile(
            tickets=(30, 120),
            busy_days=frozenset({5}),
            opens=(570, 595),
            closes=(1140, 1185),
            rushes=((600, 780, 40), (840, 1140, 60)),
            lines=(1, 6),
            sections=(
                _Section(_Goods.GENERAL, 12, 300, 6000, 10, 50),
                _Section(_Goods.STAPLE, 10, 150, 1500, 10, 35),
                _Section(_Goods.PRESS, 4, 150, 850, 10, 10),
                _Section(_Goods.FUEL, 2, 450, 1200, 10, 5),
            ),
            methods=((CARD, 70), (CASH, 18), (CHEQUE, 4), (GIFT_CARD, 8)),
            tip_percent=0,
            refund_permille=10,
            gift_card_permille=8,
        ),
    }
)

VENUES: tuple[str, ...] = tuple(_PROFILES)

# Drawer counts are right three times out of four; otherwise a few euros or cents off, more
# often short than over.
_DRAWER_ERROR_PERCENT = 25
_DRAWER_ERROR_CENTS = (-500, 300)


@dataclass(frozen=True, slots=True)
class DrawerCount:
    """The cash drawer counted at closing: ``counted`` is the method's payments + ``difference``."""

    method: str
    difference: Decimal


def _money(cents: int) -> Decimal:
    """Integer cents as a two-decimal amount (exact: no rounding involved)."""
    return Decimal(cents).scaleb(-2)


def _amount(value: Decimal) -> str:
    return format(require_money(value), "f")


def _moment(value: datetime) -> str:
    return value.isoformat(timespec="seconds")


def _due(lines: Sequence[TicketLine]) -> Decimal:
    """What a ticket's payments add up to: sale, gift card and tip lines less refund lines."""
    return sum(
        (-line.gross if line.kind is LineKind.REFUND else line.gross for line in lines), ZERO
    )


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


def _rng(*parts: str) -> random.Random:
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    # Reproducible on purpose: a simulation, not a secret.
    return random.Random(int.from_bytes(digest[:16], "big"))  # noqa: S311


def _local(business_date: date, minutes: int, seconds: int, tz: ZoneInfo) -> datetime:
    """The wall-clock time ``minutes`` after midnight of the business date.

    Wall-clock arithmetic keeps "00:40" on the next calendar day even on a DST night; the round
    trip through UTC turns a time of the spring gap (02:30) into the instant it stands for.
    """
    wall = datetime.combine(business_date, time(), tzinfo=tz) + timedelta(
        minutes=minutes, seconds=seconds
    )
    return wall.astimezone(UTC).astimezone(tz)


_Menu = tuple[tuple[Decimal, tuple[int, ...]], ...]


def _menu(profile: _Profile, rng: random.Random, rates: Mapping[_Goods, Decimal]) -> _Menu:
    return tuple(
        (
            rates[section.goods],
            tuple(
                rng.randrange(section.low, section.high + 1, section.step)
                for _ in range(section.items)
            ),
        )
        for section in profile.sections
    )


class _Till:
    """Rings up one venue's tickets, drawn in integer cents from one random source."""

    def __init__(self, rng: random.Random, profile: _Profile, menu: _Menu) -> None:
        self.rng = rng
        self.profile = profile
        self.menu = menu
        self.rush_weights = list(accumulate(weight for _, _, weight in profile.rushes))
        self.section_weights = list(accumulate(s.weight for s in profile.sections))
        self.methods = [name for name, _ in profile.methods]
        self.method_weights = list(accumulate(weight for _, weight in profile.methods))

    def moment(self) -> tuple[int, int]:
        """When a ticket is closed: minutes after midnight of the business date, seconds."""
        start, end, _ = self.rng.choices(self.profile.rushes, cum_weights=self.rush_weights)[0]
        return self.rng.randrange(start, end), self.rng.randrange(60)

    def ticket(self) -> tuple[tuple[TicketLine, ...], tuple[MethodAmount, ...]]:
        roll = self.rng.randrange(1000)
        if roll < self.profile.refund_permille:
            return self._refund()
        if roll < self.profile.refund_permille + self.profile.gift_card_permille:
            return self._gift_card()
        return self._sale()

    def _items(self, count: int) -> list[tuple[Decimal, int]]:
        items = []
        for section in self.rng.choices(
            range(len(self.menu)), cum_weights=self.section_weights, k=count
        ):
            rate, prices = self.menu[section]
            quantity = 1 if self.rng.randrange(100) < 85 else self.rng.randint(2, 3)
            items.append((rate, self.rng.choice(prices) * quantity))
        return items

    def _refund(self) -> tuple[tuple[TicketLine, ...], tuple[MethodAmount, ...]]:
        items = self._items(self.rng.randint(1, 2))
        method = CARD if self.rng.randrange(2) else CASH
        lines = tuple(TicketLine(LineKind.REFUND, rate, _money(cents)) for rate, cents in items)
        return lines, (MethodAmount(method, _money(-sum(cents for _, cents in items))),)

    def _gift_card(self) -> tuple[tuple[TicketLine, ...], tuple[MethodAmount, ...]]:
        value = _money(self.rng.randrange(2000, 10001, 1000))
        method = CASH if self.rng.randrange(4) == 0 else CARD
        return (TicketLine(LineKind.GIFT_CARD, None, value),), (MethodAmount(method, value),)

    def _sale(self) -> tuple[tuple[TicketLine, ...], tuple[MethodAmount, ...]]:
        # The smaller of two draws: most baskets are small, a few are large.
        count = min(self.rng.randint(*self.profile.lines), self.rng.randint(*self.profile.lines))
        items = self._items(count)
        lines = [TicketLine(LineKind.SALE, rate, _money(cents)) for rate, cents in items]
        due = sum(cents for _, cents in items)
        method = self.rng.choices(self.methods, cum_weights=self.method_weights)[0]
        if method == CARD and self.rng.randrange(100) < self.profile.tip_percent:
            tip = self._tip(due)
            lines.append(TicketLine(LineKind.TIP, None, _money(tip)))
            payments = [(CARD, due + tip)]
        else:
            payments = self._settle(method, due)
        return tuple(lines), tuple(MethodAmount(m, _money(cents)) for m, cents in payments)

    def _tip(self, due: int) -> int:
        if due % 100 and self.rng.randrange(2):
            return 100 - due % 100  # "keep the change": rounded up to the euro
        return self.rng.randrange(100, 501, 50)

    def _settle(self, method: str, due: int) -> list[tuple[str, int]]:
        """Payments of a ``due`` bill offered in ``method``; what it cannot cover goes on a card."""
        if method == CASH:
            if self.rng.randrange(5) < 2:
                return [(CASH, due)]
            note = 500 if due <= 2000 else 1000 if due <= 5000 else 5000
            tendered = -(-due // note) * note
            change = due - tendered
            return [(CASH, tendered), (CASH, change)] if change else [(CASH, due)]
        if method in _MEAL_VOUCHER_CARDS:
            part = min(due, _MEAL_VOUCHER_DAILY_CAP)
        elif method == PAPER_VOUCHER:
            face = self.rng.choice(_PAPER_VOUCHER_FACES)
            part = min(due // face, 2) * face
        elif method == GIFT_CARD:
            part = min(due, self.rng.randrange(1000, 5001, 500))
        else:
            return [(method, due)]
        payments = [(method, part)] if part else []
        if part < due:
            payments.append((CARD, due - part))
        return payments


def _short_card_payment(tickets: list[Ticket], rng: random.Random) -> list[Ticket]:
    index = max(range(len(tickets)), key=lambda i: _due(tickets[i].lines))
    ticket = tickets[index]
    short = _money(rng.randrange(100, 1000, 100))
    tickets[index] = replace(ticket, payments=(MethodAmount(CARD, _due(ticket.lines) - short),))
    return tickets


def _stale_rate(tickets: list[Ticket], rng: random.Random) -> list[Ticket]:
    candidates = [
        i for i, t in enumerate(tickets) if any(line.kind is LineKind.SALE for line in t.lines)
    ]
    for index in rng.sample(candidates, 1 + len(candidates) // 50):
        lines = list(tickets[index].lines)
        first_sale = next(i for i, line in enumerate(lines) if line.kind is LineKind.SALE)
        lines[first_sale] = replace(lines[first_sale], vat_rate=STALE_RATE)
        tickets[index] = replace(tickets[index], lines=tuple(lines))
    return tickets


def _paid_with_unknown_method(tickets: list[Ticket], rng: random.Random) -> list[Ticket]:
    candidates = [i for i, t in enumerate(tickets) if _due(t.lines) > 0]
    for index in rng.sample(candidates, 1 + len(candidates) // 25):
        ticket = tickets[index]
        tickets[index] = replace(
            ticket, payments=(MethodAmount(UNKNOWN_METHOD, _due(ticket.lines)),)
        )
    return tickets


def _renamed_card(tickets: list[Ticket], _rng: random.Random) -> list[Ticket]:
    return [
        replace(ticket, payments=tuple(
            replace(p, method=RENAMED_CARD) if p.method == CARD else p for p in ticket.payments
        ))
        for ticket in tickets
    ]


_FAULT_INJECTORS: Mapping[str, Callable[[list[Ticket], random.Random], list[Ticket]]] = (
    MappingProxyType(
        {
            "unbalanced": _short_card_payment,
            "wrong_vat_rate": _stale_rate,
            "unknown_method": _paid_with_unknown_method,
            "renamed_method": _renamed_card,
        }
    )
)


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
    if venue not in _PROFILES:
        raise ValueError(f"unknown venue {venue!r}; expected one of {', '.join(VENUES)}")
    unknown = faults - set(FAULTS)
    if unknown:
        raise ValueError(f"unknown faults {sorted(unknown)}; expected among {', '.join(FAULTS)}")
    if number < 1:
        raise ValueError(f"a closure number starts at 1, not {number}")
    profile = _PROFILES[venue]
    tz = ZoneInfo(timezone)
    day = business_date.isoformat()
    rng = _rng("closure", integration_id, day)
    menu = _menu(profile, _rng("menu", integration_id, venue), _RATES[territory])
    till = _Till(rng, profile, menu)

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
    # Each fault draws from its own source, so the rest of the day is the same with or without it.
    for fault in FAULTS:
        if fault in faults:
            tickets = _FAULT_INJECTORS[fault](tickets, _rng("fault", fault, integration_id, day))

    cash = sum((p.amount for t in tickets for p in t.payments if p.method == CASH), ZERO)
    difference = ZERO
    if rng.randrange(100) < _DRAWER_ERROR_PERCENT:
        # Never count less than an empty drawer.
        difference = max(_money(rng.randint(*_DRAWER_ERROR_CENTS)), -cash)
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

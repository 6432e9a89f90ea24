"""Hypothesis strategies: valid closures built from drawn tickets.

``closures(territory=...)`` draws a handful of tickets (amounts in integer cents, rates in force
in the territory, realistic and arbitrary payment methods, refunds, tips, gift cards, an
optional drawer count) whose payments add up to their lines, and builds the document with
``simulator.build_from_tickets``: every drawn closure satisfies identities 1 to 8. Sizes stay
small so that properties run fast.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from toporder_sync.core.accounts import rates_in_force
from toporder_sync.core.model import LineKind, MethodAmount, Territory, Ticket, TicketLine
from toporder_sync.core.money import ZERO
from toporder_sync.simulator import CASH, METHODS, DrawerCount, build_from_tickets

# Any character of a text the ledger can store: what UTF-8 can carry (no lone surrogates)
# but NUL, which PostgreSQL refuses (``core.bounds``).
_CHARACTERS = st.characters(codec="utf-8", exclude_characters="\x00")
# Any method name a client may type: the realistic ones, and arbitrary text.
methods: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(METHODS),
    st.text(_CHARACTERS, min_size=1, max_size=30),
)

_OFFSETS = tuple(timezone(timedelta(hours=hours)) for hours in (-4, 0, 1, 2, 4))


def _money(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2)


@st.composite
def _line(draw: st.DrawFn, rates: tuple[Decimal, ...]) -> TicketLine:
    kind = draw(st.sampled_from((LineKind.SALE,) * 3 + tuple(LineKind)))
    gross = _money(draw(st.integers(1, 50_000)))
    if kind in (LineKind.SALE, LineKind.REFUND):
        return TicketLine(kind, draw(st.sampled_from(rates)), gross)
    return TicketLine(kind, None, gross)


@st.composite
def _ticket(
    draw: st.DrawFn, number: str, rates: tuple[Decimal, ...], opened_at: datetime
) -> Ticket:
    lines = tuple(draw(st.lists(_line(rates), min_size=1, max_size=4)))
    due = sum((-line.gross if line.kind is LineKind.REFUND else line.gross for line in lines), ZERO)
    # Split payments, change handed back included: any amounts, the last one settles the ticket.
    others = draw(st.lists(st.tuples(methods, st.integers(-5_000, 50_000).map(_money)), max_size=2))
    last = due - sum((amount for _, amount in others), ZERO)
    payments = tuple(MethodAmount(m, a) for m, a in (*others, (draw(methods), last)))
    closed_at = opened_at + timedelta(seconds=draw(st.integers(0, 14 * 3600)))
    return Ticket(number, closed_at, lines, payments)


@st.composite
def _closure(draw: st.DrawFn, territory: Territory) -> dict[str, Any]:
    rates = tuple(sorted(rates_in_force(territory)))
    # Days already over at the tests' fixed instant (2026-11-28 in UTC): a closure of a day
    # further ahead is refused at receipt (``core.bounds.DAYS_AHEAD``).
    business_date = draw(st.dates(date(2020, 1, 1), date(2026, 11, 27)))
    opened_at = datetime.combine(
        business_date, time(draw(st.integers(5, 12))), tzinfo=draw(st.sampled_from(_OFFSETS))
    )
    number = draw(st.integers(1, 1_000_000))
    tickets = [
        draw(_ticket(f"{number}-{index}", rates, opened_at))
        for index in range(1, draw(st.integers(0, 6)) + 1)
    ]
    used = sorted({p.method for t in tickets for p in t.payments})
    drawer_method = st.sampled_from([CASH, *used])
    drawer = draw(
        st.none() | st.builds(DrawerCount, drawer_method, st.integers(-1_000, 1_000).map(_money))
    )
    return build_from_tickets(
        tickets,
        integration_id=draw(st.text(_CHARACTERS, min_size=1, max_size=40)),
        establishment_id=draw(st.text(_CHARACTERS, min_size=1, max_size=20)),
        establishment_name=draw(st.text(_CHARACTERS, min_size=1, max_size=60)),
        number=number,
        business_date=business_date,
        opened_at=opened_at,
        closed_at=opened_at + timedelta(hours=15),
        perpetual_before=_money(draw(st.integers(0, 10**12))),
        drawer=drawer,
    )


def closures(territory: Territory = Territory.METROPOLE) -> st.SearchStrategy[dict[str, Any]]:
    """Valid v1 closure documents of ``territory``, built from drawn tickets."""
    return _closure(territory)

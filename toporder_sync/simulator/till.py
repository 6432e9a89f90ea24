"""A venue's till: the payment methods, the venues the simulator knows, and the tickets it rings up.

Venues sell a plausible mix: a restaurant food at 10 % and alcohol at 20 %, a bakery bread at
5.5 % with some 10 % and 20 %, a bar alcohol at 20 % and soft drinks at 10 %, a shop goods at
20 % with groceries at 5.5 % and newspapers at 2.1 %; in Corse and the DOM the same goods take
the rates of those territories (accounting-rules.md), e.g. 13 % for petroleum products and
0.9 % for newspapers in Corse. The mix is plausible, not tax advice; every rate used is one in
force in the territory.

What it promises: tickets are drawn in integer cents from one seeded random source
(``seeded_random``: SHA-256, since ``hash()`` is salted per process), so the same seed rings up
the same tickets, and money never goes through a float.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from itertools import accumulate
from types import MappingProxyType

from toporder_sync.core.model import LineKind, MethodAmount, Territory, TicketLine

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

# Meal-voucher cards may pay at most 25 € a day (Code du travail, R. 3262-10); the rest of the
# bill goes on a bank card. Paper vouchers give no change, so they never pay more than the bill.
_MEAL_VOUCHER_DAILY_CAP = 2500
_MEAL_VOUCHER_CARDS = frozenset({SWILE, EDENRED, CONECS})
_PAPER_VOUCHER_FACES = (800, 900, 1000, 1100)


class Goods(Enum):
    MEAL = "meal"  # food and soft drinks consumed on the premises
    ALCOHOL = "alcohol"
    TAKEAWAY = "takeaway"  # prepared food sold to take away
    STAPLE = "staple"  # bread, pastries, groceries
    GENERAL = "general"  # goods at the normal rate: confectionery, gifts, hygiene
    PRESS = "press"
    SHOW = "show"  # entry to a live show
    FUEL = "fuel"  # petroleum products: lamp oil, gas cartridges


_M, _C, _D = Territory.METROPOLE, Territory.CORSE, Territory.DOM


def _rates(**by_goods: str) -> Mapping[Goods, Decimal]:
    return MappingProxyType({Goods[name.upper()]: Decimal(r) for name, r in by_goods.items()})


RATES: Mapping[Territory, Mapping[Goods, Decimal]] = MappingProxyType(
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
class Section:
    """A part of the menu: ``items`` prices drawn once per establishment, in cents."""

    goods: Goods
    items: int
    low: int
    high: int
    step: int
    weight: int


@dataclass(frozen=True, slots=True)
class Profile:
    """How a venue trades. Times are minutes after midnight of the business date (past 1440:
    the next calendar day); rush windows start after the latest opening and end before the
    earliest closing, so every ticket falls within the business day."""

    tickets: tuple[int, int]
    busy_days: frozenset[int]
    opens: tuple[int, int]
    closes: tuple[int, int]
    rushes: tuple[tuple[int, int, int], ...]
    lines: tuple[int, int]
    sections: tuple[Section, ...]
    methods: tuple[tuple[str, int], ...]
    tip_percent: int
    refund_permille: int
    gift_card_permille: int


PROFILES: Mapping[str, Profile] = MappingProxyType(
    {
        "restaurant": Profile(
            tickets=(60, 180),
            busy_days=frozenset({4, 5}),
            opens=(660, 705),
            closes=(1450, 1530),
            rushes=((720, 870, 45), (1170, 1410, 55)),
            lines=(1, 14),
            sections=(
                Section(Goods.MEAL, 8, 1400, 2900, 50, 30),
                Section(Goods.MEAL, 8, 600, 1200, 50, 25),
                Section(Goods.MEAL, 6, 220, 550, 10, 20),
                Section(Goods.ALCOHOL, 6, 450, 950, 50, 20),
                Section(Goods.ALCOHOL, 4, 2400, 5200, 100, 4),
                Section(Goods.TAKEAWAY, 3, 450, 900, 50, 1),
            ),
            methods=(
                (CARD, 55), (CASH, 10), (SWILE, 8), (EDENRED, 5), (CONECS, 3),
                (PAPER_VOUCHER, 5), (CHEQUE, 1), (GIFT_CARD, 2), (UBER_EATS, 6), (DELIVEROO, 5),
            ),
            tip_percent=12,
            refund_permille=3,
            gift_card_permille=4,
        ),
        "bakery": Profile(
            tickets=(150, 400),
            busy_days=frozenset({5, 6}),
            opens=(390, 415),
            closes=(1185, 1215),
            rushes=((420, 570, 40), (690, 840, 35), (990, 1170, 25)),
            lines=(1, 5),
            sections=(
                Section(Goods.STAPLE, 6, 110, 480, 10, 45),
                Section(Goods.STAPLE, 6, 110, 260, 10, 25),
                Section(Goods.TAKEAWAY, 5, 450, 950, 50, 15),
                Section(Goods.GENERAL, 4, 250, 1500, 50, 8),
                Section(Goods.MEAL, 3, 150, 300, 10, 7),
            ),
            methods=(
                (CARD, 48), (CASH, 42), (SWILE, 4), (PAPER_VOUCHER, 2), (EDENRED, 2), (CONECS, 2),
            ),
            tip_percent=0,
            refund_permille=1,
            gift_card_permille=1,
        ),
        "bar": Profile(
            tickets=(80, 250),
            busy_days=frozenset({3, 4, 5}),
            opens=(960, 1015),
            closes=(1515, 1590),
            rushes=((1020, 1200, 30), (1200, 1500, 70)),
            lines=(1, 6),
            sections=(
                Section(Goods.ALCOHOL, 8, 350, 900, 50, 45),
                Section(Goods.ALCOHOL, 6, 900, 1400, 50, 20),
                Section(Goods.MEAL, 6, 200, 500, 10, 20),
                Section(Goods.MEAL, 4, 600, 1800, 100, 12),
                Section(Goods.SHOW, 2, 500, 1500, 100, 3),
            ),
            methods=((CARD, 74), (CASH, 24), (GIFT_CARD, 2)),
            tip_percent=8,
            refund_permille=2,
            gift_card_permille=1,
        ),
        "shop": Profile(
            tickets=(30, 120),
            busy_days=frozenset({5}),
            opens=(570, 595),
            closes=(1140, 1185),
            rushes=((600, 780, 40), (840, 1140, 60)),
            lines=(1, 6),
            sections=(
                Section(Goods.GENERAL, 12, 300, 6000, 10, 50),
                Section(Goods.STAPLE, 10, 150, 1500, 10, 35),
                Section(Goods.PRESS, 4, 150, 850, 10, 10),
                Section(Goods.FUEL, 2, 450, 1200, 10, 5),
            ),
            methods=((CARD, 70), (CASH, 18), (CHEQUE, 4), (GIFT_CARD, 8)),
            tip_percent=0,
            refund_permille=10,
            gift_card_permille=8,
        ),
    }
)

VENUES: tuple[str, ...] = tuple(PROFILES)


def from_cents(cents: int) -> Decimal:
    """Integer cents as a two-decimal amount (exact: no rounding involved)."""
    return Decimal(cents).scaleb(-2)


def seeded_random(*parts: str) -> random.Random:
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    # Reproducible on purpose: a simulation, not a secret.
    return random.Random(int.from_bytes(digest[:16], "big"))  # noqa: S311


Menu = tuple[tuple[Decimal, tuple[int, ...]], ...]


def draw_menu(profile: Profile, rng: random.Random, rates: Mapping[Goods, Decimal]) -> Menu:
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


class Till:
    """Rings up one venue's tickets, drawn in integer cents from one random source."""

    def __init__(self, rng: random.Random, profile: Profile, menu: Menu) -> None:
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
        lines = tuple(TicketLine(LineKind.REFUND, rate, from_cents(cents)) for rate, cents in items)
        return lines, (MethodAmount(method, from_cents(-sum(cents for _, cents in items))),)

    def _gift_card(self) -> tuple[tuple[TicketLine, ...], tuple[MethodAmount, ...]]:
        value = from_cents(self.rng.randrange(2000, 10001, 1000))
        method = CASH if self.rng.randrange(4) == 0 else CARD
        return (TicketLine(LineKind.GIFT_CARD, None, value),), (MethodAmount(method, value),)

    def _sale(self) -> tuple[tuple[TicketLine, ...], tuple[MethodAmount, ...]]:
        # The smaller of two draws: most baskets are small, a few are large.
        count = min(self.rng.randint(*self.profile.lines), self.rng.randint(*self.profile.lines))
        items = self._items(count)
        lines = [TicketLine(LineKind.SALE, rate, from_cents(cents)) for rate, cents in items]
        due = sum(cents for _, cents in items)
        method = self.rng.choices(self.methods, cum_weights=self.method_weights)[0]
        if method == CARD and self.rng.randrange(100) < self.profile.tip_percent:
            tip = self._tip(due)
            lines.append(TicketLine(LineKind.TIP, None, from_cents(tip)))
            payments = [(CARD, due + tip)]
        else:
            payments = self._settle(method, due)
        return tuple(lines), tuple(MethodAmount(m, from_cents(cents)) for m, cents in payments)

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

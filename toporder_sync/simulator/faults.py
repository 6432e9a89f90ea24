"""Every fault the simulator can inject: in a closure's content, and in how Toporder serves it.

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

Each content fault draws from its own seeded source, so the rest of the day is the same with or
without it. The fake server (``simulator.server``) adds the faults of the wire, named in
``FAULT_NAMES`` and chosen by ``FaultRule``s: HTTP faults per request (``429``, ``5xx``,
``timeout``, ``truncated``, ``garbled``), ``late`` and ``missing`` per day, and
``webhook_5xx`` per delivery of an error notification.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from toporder_sync.core.errors import ConfigurationError
from toporder_sync.core.model import LineKind, MethodAmount, Ticket, TicketLine
from toporder_sync.core.money import ZERO
from toporder_sync.simulator.till import CARD, from_cents, seeded_random

UNKNOWN_METHOD = "Lydia"
RENAMED_CARD = "Carte bancaire"
STALE_RATE = Decimal("19.6")

FAULTS: tuple[str, ...] = ("unbalanced", "wrong_vat_rate", "unknown_method", "renamed_method")

HTTP_FAULTS = ("429", "5xx", "timeout", "truncated", "garbled")
DAY_FAULTS = ("late", "missing")
WEBHOOK_FAULTS = ("webhook_5xx",)
FAULT_NAMES = (*HTTP_FAULTS, *DAY_FAULTS, *FAULTS, *WEBHOOK_FAULTS)


def _due(lines: Sequence[TicketLine]) -> Decimal:
    """What a ticket's payments add up to: sale, gift card and tip lines less refund lines."""
    return sum(
        (-line.gross if line.kind is LineKind.REFUND else line.gross for line in lines), ZERO
    )


def _short_card_payment(tickets: list[Ticket], rng: random.Random) -> list[Ticket]:
    index = max(range(len(tickets)), key=lambda i: _due(tickets[i].lines))
    ticket = tickets[index]
    short = from_cents(rng.randrange(100, 1000, 100))
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


def inject(
    faults: frozenset[str], tickets: list[Ticket], integration_id: str, day: str
) -> list[Ticket]:
    """``tickets`` with ``faults`` injected, in the order of ``FAULTS``."""
    # Each fault draws from its own source, so the rest of the day is the same with or without it.
    for fault in FAULTS:
        if fault in faults:
            rng = seeded_random("fault", fault, integration_id, day)
            tickets = _FAULT_INJECTORS[fault](tickets, rng)
    return tickets


@dataclass(frozen=True, slots=True)
class FaultRule:
    """One fault and when it strikes.

    ``rate``: the share of requests (or days) it strikes, drawn from the seed. ``first``: only
    the first N requests of a client-day (or deliveries of a webhook id) can be struck.
    ``retry_after``: the seconds a 429 asks for. ``delay``: how long a ``timeout`` keeps the
    client waiting before answering. ``requests``: how many requests a ``late`` closure is 404.
    """

    name: str
    rate: float = 1.0
    first: int | None = None
    retry_after: int = 1
    delay: float = 15.0
    requests: int = 1

    def __post_init__(self) -> None:
        if self.name not in FAULT_NAMES:
            raise ConfigurationError(f"unknown fault {self.name!r}; expected one of "
                                     f"{', '.join(FAULT_NAMES)}")
        if not 0 <= self.rate <= 1:
            raise ConfigurationError(f"fault {self.name}: rate {self.rate} is not within 0..1")

    @classmethod
    def parse(cls, text: str) -> FaultRule:
        """``NAME[:key=value,...]``, e.g. ``429:rate=0.5,retry_after=2`` or ``late:requests=3``."""
        name, _, options = text.partition(":")
        values: dict[str, Any] = {}
        kinds: Mapping[str, Callable[[str], Any]] = {
            "rate": float, "first": int, "retry_after": int, "delay": float, "requests": int}
        for option in filter(None, options.split(",")):
            key, _, value = option.partition("=")
            if key not in kinds:
                raise ConfigurationError(f"fault {text!r}: unknown option {key!r}; expected "
                                         f"{', '.join(kinds)}")
            try:
                values[key] = kinds[key](value)
            except ValueError:
                raise ConfigurationError(f"fault {text!r}: {key}={value!r} is not a number") \
                    from None
        return cls(name.strip(), **values)

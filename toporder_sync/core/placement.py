"""Where a posted entry carries each payment method of its closure, re-derived from the closure.

An entry's lines name accounts, not payment methods: several methods share an account, and a
line's label names a method only when it is alone on its account. To know on which account a
posted entry holds each method's amount (before moving it with a reversal and a new entry,
PCG art. 420-5), ``placements`` rebuilds the entry of the same closure with the client's
settings as they are now, and asks which placement of the methods on accounts turns that
rebuilt entry into the posted one: everything but the payment lines (sales, VAT, gift cards,
tips, cash differences) is taken as built now, and each method's amount (``entry.paid_amount``)
is put on one account.

When several placements explain the posted entry (two methods of equal amounts), the one that
moves the fewest methods away from where today's settings send them wins, the methods matched
by name (the default links) keeping their account first. When none does (another setting
changed since the entry was posted, e.g. the tips account), the entry is not explained:
``None``, and nobody guesses.

Pure: no database, no Prefect.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal

from toporder_sync.core.entry import build_entry, paid_amount
from toporder_sync.core.mapping import match_methods
from toporder_sync.core.model import ClientSettings, Closure, Entry, MatchRule
from toporder_sync.core.money import ZERO

# A closure's handful of methods is placed in a few steps; a pathological one (dozens of
# methods of equal amounts) is given up on rather than searched for minutes.
SEARCH_STEPS = 100_000

# The order in which methods keep the account today's settings give them when a placement is
# ambiguous: a name recognised by a default link is the least likely to have moved, an explicit
# mapping (the setting an accountant changes) the most.
_KEEPS_FIRST = (MatchRule.DEFAULT, MatchRule.FALLBACK, MatchRule.NEAR_MISS, MatchRule.EXACT)


@dataclass(frozen=True, slots=True)
class Placement:
    """One payment method of a posted entry: its amount, the account the entry carries it on
    (``posted_on``), and where the client's settings send it now (``belongs_on``, by ``rule``).
    """

    method: str
    amount: Decimal
    posted_on: str
    belongs_on: str
    rule: MatchRule

    @property
    def moves(self) -> bool:
        """Whether posting the closure again would move this method's amount."""
        return self.posted_on != self.belongs_on


def placements(closure: Closure, settings: ClientSettings,
               posted: Entry) -> tuple[Placement, ...] | None:
    """Each method of ``closure`` with a non-zero amount, where ``posted`` (an entry built from
    ``closure``) carries it and where ``settings`` send it now; None when no placement of the
    methods explains the posted entry's lines."""
    mapping = match_methods((p.method for p in closure.payments), settings)
    now = {match.method: match for match in mapping.matches}
    amounts: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for payment in closure.payments:
        amounts[payment.method] += paid_amount(payment, closure.cash_count)
    methods = [m for m in now if amounts[m] != ZERO]
    # What the posted entry holds on each account beyond what today's entry holds besides
    # the payments: the payments' part, to be explained by a placement of the methods.
    target = _net(posted)
    for account, amount in _net(build_entry(closure, settings, mapping)).items():
        target[account] -= amount
    for method in methods:
        target[now[method].account] += amounts[method]
    wanted = {account: amount for account, amount in target.items() if amount != ZERO}
    order = sorted(methods, key=lambda m: _KEEPS_FIRST.index(now[m].rule))
    found = _place(order, amounts, {m: now[m].account for m in methods}, wanted)
    if found is None:
        return None
    return tuple(Placement(m, amounts[m], found[m], now[m].account, now[m].rule)
                 for m in methods)


def _net(entry: Entry) -> defaultdict[str, Decimal]:
    """Debit minus credit, per account."""
    net: defaultdict[str, Decimal] = defaultdict(lambda: ZERO)
    for line in entry.lines:
        net[line.account] += line.debit - line.credit
    return net


def _place(order: list[str], amounts: Mapping[str, Decimal], today: Mapping[str, str],
           wanted: Mapping[str, Decimal]) -> dict[str, str] | None:
    """The placement of the methods (each on one account) whose sums per account are
    ``wanted``, moving the fewest methods from ``today``'s accounts; None if there is none
    (or if the search took more than ``SEARCH_STEPS``)."""
    accounts = sorted(set(wanted) | set(today.values()))
    all_positive = all(amounts[m] > ZERO for m in order)
    steps = 0

    def search(index: int, moves_left: int, left: dict[str, Decimal],
               chosen: dict[str, str]) -> Iterator[dict[str, str]]:
        nonlocal steps
        steps += 1
        if steps > SEARCH_STEPS:
            return
        if index == len(order):
            if not any(left.values()):
                yield dict(chosen)
            return
        method = order[index]
        for account in (today[method], *(a for a in accounts if a != today[method])):
            moved = account != today[method]
            if moved and moves_left == 0:
                break
            remaining = left.get(account, ZERO) - amounts[method]
            if all_positive and remaining < ZERO:
                continue  # no later method can take it back
            chosen[method] = account
            yield from search(index + 1, moves_left - moved,
                              {**left, account: remaining}, chosen)
            del chosen[method]

    for moves in range(len(order) + 1):
        found = next(search(0, moves, dict(wanted), {}), None)
        if found is not None:
            return found
        if steps > SEARCH_STEPS:
            return None
    return None

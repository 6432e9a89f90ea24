"""Building the day's sales-journal entry from a valid closure (``accounting-rules.md``).

One entry per client and business day in journal VT, dated the business day, piece ``Z<n>``.
Lines for the same account and side are summed; zero lines are left out; a negative amount is
posted on the other side (a method that handed back more than it took is a credit). The entry
balances to the cent or ``build_entry`` raises: nothing unbalanced ever leaves the core.

``check_entry_lines`` is the invariant on what the core builds (a failure there is a bug, so
it raises). It is plain Python over the dozen lines of an entry, exact on ``Decimal``s: a
pandera model of those lines cost as much as building the entry ten times over, for a table
that is our own output, not a closure's.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from toporder_sync.core import accounts
from toporder_sync.core.errors import ToporderSyncError
from toporder_sync.core.mapping import MappingResult
from toporder_sync.core.model import (
    CashCount,
    ClientSettings,
    Closure,
    Entry,
    EntryLine,
    MethodAmount,
)
from toporder_sync.core.money import CENT, ZERO, format_display, format_rate, require_money

JOURNAL = "VT"
JOURNAL_LABEL = "Journal des ventes"
_ACCOUNT = re.compile(r"[1-8][0-9]{2,11}")  # a PCG account number, matched whole


class UnbalancedEntryError(ValueError):
    """Raised when the lines of a built entry do not balance (a validation gap upstream)."""


class InvalidEntryError(ToporderSyncError, ValueError):
    """A built entry breaks an invariant of entry lines: a bug in the core, never a POS's.

    ``problems`` lists every broken invariant as ``(rule, line, message)``, all at once.
    """

    def __init__(self, piece_ref: str, problems: list[tuple[str, str, str]]) -> None:
        self.problems = tuple(problems)
        self.rules = frozenset(rule for rule, _, _ in problems)
        listed = "; ".join(f"{rule} ({line}): {message}" for rule, line, message in problems)
        super().__init__(f"entry {piece_ref}: {listed}")


def _is_amount(value: object) -> bool:
    """Exact non-negative cents: a two-decimal ``Decimal`` (never a float, nor a bool)."""
    return (type(value) is Decimal and value.is_finite() and value.same_quantum(CENT)
            and value >= 0)


def _line_problems(number: int, line: EntryLine) -> Iterator[tuple[str, str, str]]:
    where = f"lines[{number}]"
    if not (isinstance(line.account, str) and _ACCOUNT.fullmatch(line.account)):
        yield "str_matches", where, f"account {line.account!r} is not a PCG account number"
    for column in ("account_label", "label"):
        if not (isinstance(getattr(line, column), str) and getattr(line, column)):
            yield "str_length", where, f"{column} is empty"
    for column in ("debit", "credit"):
        if not _is_amount(getattr(line, column)):
            yield "exact_money", where, f"{column} {getattr(line, column)!r} is not exact cents ≥ 0"
    if (line.debit == ZERO) == (line.credit == ZERO):
        yield "one_side_per_line", where, "a line is a debit or a credit, not both nor neither"


def check_entry_lines(entry: Entry) -> None:
    """The invariants of a built entry's lines; raises ``InvalidEntryError`` with all of them.

    Accounts are PCG numbers, labels are not empty, each line is on one side only, amounts
    are exact non-negative cents, and the debits equal the credits (summed once every amount
    is exact, so that the sum means something).
    """
    problems = [problem for number, line in enumerate(entry.lines)
                for problem in _line_problems(number, line)]
    if not problems and entry.total_debit != entry.total_credit:
        problems.append(("entry_balanced", "lines",
                         f"debit {entry.total_debit} ≠ credit {entry.total_credit}"))
    if problems:
        raise InvalidEntryError(entry.piece_ref, problems)


@dataclass(slots=True)
class _Lines:
    """Accumulates amounts per (account, side), remembering the first label of each."""

    debit: dict[str, Decimal]
    credit: dict[str, Decimal]
    labels: dict[tuple[str, str], list[str]]

    def add(self, side: str, account: str, amount: Decimal, label: str) -> None:
        amount = require_money(amount)
        if amount < 0:
            side, amount = ("credit" if side == "debit" else "debit"), -amount
        book = self.debit if side == "debit" else self.credit
        book[account] = book.get(account, ZERO) + amount
        self.labels[(side, account)].append(label)


def _line_label(labels: list[str], account: str, piece: str) -> str:
    distinct = list(dict.fromkeys(labels))
    text = distinct[0] if len(distinct) == 1 else accounts.account_label(account)
    return f"{text} {piece}"


def paid_amount(payment: MethodAmount, cash: CashCount | None) -> Decimal:
    """What a payment puts on its method's account: its amount, or for the cash method of a
    drawer count the counted amount (what reaches the bank; the difference is a gain or a
    loss, on its own account)."""
    if cash is not None and payment.method == cash.method:
        return cash.counted
    return payment.amount


def build_entry(closure: Closure, settings: ClientSettings, mapping: MappingResult) -> Entry:
    """The balanced entry of a closure that passed validation, with the client's accounts."""
    overrides = settings.account_overrides
    lines = _Lines({}, {}, defaultdict(list))
    for vat_lines, side, word in ((closure.sales, "credit", "Ventes"),
                                  (closure.refunds, "debit", "Remboursements")):
        for line in vat_lines:
            rate = accounts.RATES_BY_VALUE[line.vat_rate]
            shown = format_rate(line.vat_rate)
            lines.add(side, accounts.resolve(overrides, f"revenue:{rate.rate}", rate.revenue),
                      line.net, f"{word} TVA {shown}%")
            lines.add(side, accounts.resolve(overrides, f"vat:{rate.rate}", rate.vat),
                      line.vat, f"TVA collectée {shown}%")
    lines.add("credit", accounts.resolve(overrides, accounts.GIFT_CARDS,
                                         accounts.FIXED_ACCOUNTS[accounts.GIFT_CARDS]),
              closure.gift_cards_sold, "Cartes cadeaux vendues")
    lines.add("credit", accounts.resolve(overrides, accounts.TIPS,
                                         accounts.FIXED_ACCOUNTS[accounts.TIPS]),
              sum((t.amount for t in closure.tips), ZERO), "Pourboires")
    cash = closure.cash_count
    for payment in closure.payments:
        amount = paid_amount(payment, cash)
        if cash is not None and payment.method == cash.method:
            difference = cash.expected - cash.counted
            key = accounts.CASH_SHORTAGE if difference > 0 else accounts.CASH_SURPLUS
            side = "debit" if difference > 0 else "credit"
            lines.add(side, accounts.resolve(overrides, key, accounts.FIXED_ACCOUNTS[key]),
                      abs(difference), "Écart de caisse")
        lines.add("debit", mapping.account_of(payment.method), amount, payment.method)
    entry_lines = tuple(
        EntryLine(
            account=account,
            account_label=accounts.account_label(account),
            label=_line_label(lines.labels[(side, account)], account, closure.piece_ref),
            debit=amount if side == "debit" else ZERO,
            credit=amount if side == "credit" else ZERO,
        )
        for side, book in (("debit", lines.debit), ("credit", lines.credit))
        for account, amount in book.items()
        if amount != ZERO
    )
    entry = Entry(
        journal=JOURNAL,
        journal_label=JOURNAL_LABEL,
        date=closure.business_date,
        piece_ref=closure.piece_ref,
        label=(f"Clôture {closure.piece_ref} du {closure.business_date.isoformat()} - "
               f"{closure.establishment_name}"),
        lines=entry_lines,
    )
    if not entry.is_balanced:
        raise UnbalancedEntryError(
            f"entry {entry.piece_ref} of {entry.date}: debit {format_display(entry.total_debit)}"
            f" ≠ credit {format_display(entry.total_credit)}"
        )
    return entry

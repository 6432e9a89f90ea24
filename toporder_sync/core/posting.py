"""The accounting rules of posting an entry to the ledger: what may be posted, and a reversal.

Posted entries are never edited or deleted: a day whose entry must change gets the reversal of
its current entry, then the new entry (PCG art. 420-5). ``reversal_of`` builds that reversal,
every line on the other side; ``posting_problem`` says why an entry may not be posted on a
business day, or None. Both are pure: the ledger (``ledger.journal``) applies them.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from toporder_sync.core.model import Entry


def posting_problem(entry: Entry, business_date: date) -> str | None:
    """Why ``entry`` cannot be posted as the entry of ``business_date``; None if it can.

    An entry is dated its business day, has lines, and balances (its debits equal its
    credits): a day's journal holds nothing else.
    """
    if entry.date != business_date:
        return f"an entry dated {entry.date} cannot be posted on {business_date}"
    if not entry.lines:
        return f"entry {entry.piece_ref} has no lines"
    if not entry.is_balanced:
        return (f"entry {entry.piece_ref} is not balanced: "
                f"debit {entry.total_debit} ≠ credit {entry.total_credit}")
    return None


def reversal_of(entry: Entry, number: int) -> Entry:
    """The reversal of ``entry``, posted as number ``number``: the same entry with debit and
    credit swapped on every line, labelled as the reversal of that number (PCG art. 420-5)."""
    return replace(
        entry,
        label=f"Extourne de l'écriture n°{number} - {entry.label}",
        lines=tuple(replace(line, debit=line.credit, credit=line.debit) for line in entry.lines),
    )

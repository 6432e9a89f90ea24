"""The posting rules of the core, called directly: what may be posted, and a reversal."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from toporder_sync.core.model import Entry, EntryLine
from toporder_sync.core.posting import posting_problem, reversal_of

DAY = date(2026, 11, 27)
ZERO = Decimal("0.00")


def _line(account: str, debit: str, credit: str) -> EntryLine:
    return EntryLine(account, f"Compte {account}", f"Ligne {account} Z412", Decimal(debit),
                     Decimal(credit))


def _entry(*lines: EntryLine, day: date = DAY) -> Entry:
    return Entry(journal="VT", journal_label="Journal des ventes", date=day, piece_ref="Z412",
                 label="Clôture Z412 du 2026-11-27 - Le Petit Zinc", lines=lines)


BALANCED = (_line("511500", "120.00", "0.00"), _line("706100", "0.00", "100.00"),
            _line("445710", "0.00", "20.00"))


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (_entry(*BALANCED), None),
        (_entry(*BALANCED, day=DAY + timedelta(days=1)),
         "an entry dated 2026-11-28 cannot be posted on 2026-11-27"),
        (_entry(), "entry Z412 has no lines"),
        (_entry(_line("511500", "10.00", "0.00"), _line("706100", "0.00", "9.99")),
         "entry Z412 is not balanced: debit 10.00 ≠ credit 9.99"),
    ],
    ids=["balanced", "another day", "no lines", "unbalanced"],
)
def test_posting_problem(entry: Entry, problem: str | None) -> None:
    assert posting_problem(entry, DAY) == problem


def test_a_reversal_swaps_every_line_and_names_the_entry_it_reverses() -> None:
    original = _entry(*BALANCED)
    reversal = reversal_of(original, 7)
    assert reversal.label == ("Extourne de l'écriture n°7 - "
                              "Clôture Z412 du 2026-11-27 - Le Petit Zinc")
    assert [(line.account, line.debit, line.credit) for line in reversal.lines] == [
        ("511500", ZERO, Decimal("120.00")),
        ("706100", Decimal("100.00"), ZERO),
        ("445710", Decimal("20.00"), ZERO),
    ]
    assert (reversal.journal, reversal.date, reversal.piece_ref) == ("VT", DAY, "Z412")
    assert [(line.account_label, line.label) for line in reversal.lines] == [
        (line.account_label, line.label) for line in original.lines]


def test_an_entry_and_its_reversal_cancel_out_on_every_account() -> None:
    original = _entry(*BALANCED)
    reversal = reversal_of(original, 1)
    assert posting_problem(reversal, DAY) is None
    for line, undone in zip(original.lines, reversal.lines, strict=True):
        assert line.debit - line.credit + undone.debit - undone.credit == ZERO

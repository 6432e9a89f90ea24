"""The FEC export: a golden file of the worked example, and the format's rules one by one."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from toporder_sync.core.accounts import ACCOUNT_LABELS
from toporder_sync.core.fec import (
    FEC_FIELDS,
    FecEntry,
    fec_filename,
    fec_rows,
    fec_text,
    render_fec,
    write_fec,
)
from toporder_sync.core.model import Entry, EntryLine

GOLDEN = Path(__file__).resolve().parent / "golden" / "fec_worked_example.txt"
BUSINESS_DAY = date(2026, 11, 27)
LABEL = "Clôture Z412 du 2026-11-27 - Le Petit Zinc"


def line(account: str, label: str, debit: str = "0.00", credit: str = "0.00") -> EntryLine:
    return EntryLine(account, ACCOUNT_LABELS[account], label, Decimal(debit), Decimal(credit))


def entry(label: str, *lines: EntryLine) -> Entry:
    return Entry("VT", "Journal des ventes", BUSINESS_DAY, "Z412", label, lines)


def reversal(original: Entry, number: int) -> Entry:
    """The entry that cancels ``original``: same date, sides swapped, saying what it cancels."""
    return Entry(
        original.journal,
        original.journal_label,
        original.date,
        original.piece_ref,
        f"Annulation de l'écriture {number} - {original.label}",
        tuple(
            EntryLine(
                x.account, x.account_label, f"Annulation écriture {number} - {x.label}",
                x.credit, x.debit,
            )
            for x in original.lines
        ),
    )


# accounting-rules.md, worked example: samples/valid-metropole.json with no explicit mapping.
WORKED_EXAMPLE = entry(
    LABEL,
    line("511500", "Carte Bancaire Z412", debit="925.00"),
    line("511800", "Swile Z412", debit="200.00"),
    line("530000", "Espèces Z412", debit="398.00"),
    line("658000", "Écart de caisse Z412", debit="2.00"),
    line("706100", "Ventes TVA 10% Z412", credit="1000.00"),
    line("706200", "Ventes TVA 20% Z412", credit="300.00"),
    line("445712", "TVA collectée 10% Z412", credit="100.00"),
    line("445711", "TVA collectée 20% Z412", credit="60.00"),
    line("419100", "Cartes cadeaux vendues Z412", credit="50.00"),
    line("467500", "Pourboires Z412", credit="15.00"),
)
# The same day posted again once the missing 2.00 was found in the drawer.
CORRECTED = entry(
    LABEL,
    line("511500", "Carte Bancaire Z412", debit="925.00"),
    line("511800", "Swile Z412", debit="200.00"),
    line("530000", "Espèces Z412", debit="400.00"),
    line("706100", "Ventes TVA 10% Z412", credit="1000.00"),
    line("706200", "Ventes TVA 20% Z412", credit="300.00"),
    line("445712", "TVA collectée 10% Z412", credit="100.00"),
    line("445711", "TVA collectée 20% Z412", credit="60.00"),
    line("419100", "Cartes cadeaux vendues Z412", credit="50.00"),
    line("467500", "Pourboires Z412", credit="15.00"),
)
ENTRIES = (
    FecEntry(1, WORKED_EXAMPLE, date(2026, 11, 28)),
    FecEntry(2, reversal(WORKED_EXAMPLE, 1), date(2026, 12, 2)),
    FecEntry(3, CORRECTED, date(2026, 12, 2)),
)


def one_line_entry(
    *, label: str = "Ventes", account_label: str = "Ventes TVA 10%", debit: str = "0.00",
    credit: str = "0.00", entry_label: str = LABEL,
) -> FecEntry:
    return FecEntry(
        1,
        Entry(
            "VT",
            "Journal des ventes",
            BUSINESS_DAY,
            "Z412",
            entry_label,
            (EntryLine("706100", account_label, label, Decimal(debit), Decimal(credit)),),
        ),
        date(2026, 11, 28),
    )


def field(row: tuple[str, ...], name: str) -> str:
    return row[FEC_FIELDS.index(name)]


def only_row(fec_entry: FecEntry) -> tuple[str, ...]:
    [row] = fec_rows([fec_entry])
    return row


def test_worked_example_matches_the_golden_file(tmp_path: Path) -> None:
    assert WORKED_EXAMPLE.is_balanced and WORKED_EXAMPLE.total_debit == Decimal("1525.00")
    assert render_fec(ENTRIES).encode("iso-8859-15") == GOLDEN.read_bytes()
    out = tmp_path / fec_filename("123456789", date(2026, 12, 31))
    assert write_fec(ENTRIES, out) == 29
    assert out.read_bytes() == GOLDEN.read_bytes()


def test_header_is_the_eighteen_names_in_order() -> None:
    header = render_fec([]).split("\r\n")[0]
    assert header.split("\t") == [
        "JournalCode", "JournalLib", "EcritureNum", "EcritureDate", "CompteNum", "CompteLib",
        "CompAuxNum", "CompAuxLib", "PieceRef", "PieceDate", "EcritureLib", "Debit", "Credit",
        "EcritureLet", "DateLet", "ValidDate", "Montantdevise", "Idevise",
    ]  # fmt: skip
    assert render_fec([]) == header + "\r\n"


def test_every_record_has_eighteen_fields_and_ends_with_crlf() -> None:
    text = render_fec(ENTRIES)
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    records = text.split("\r\n")[:-1]
    assert len(records) == 1 + 10 + 10 + 9
    assert all(len(record.split("\t")) == 18 for record in records)


def test_every_line_carries_its_entry_number_and_dates() -> None:
    rows = list(fec_rows(ENTRIES))
    assert [field(r, "EcritureNum") for r in rows] == ["1"] * 10 + ["2"] * 10 + ["3"] * 9
    assert {field(r, "EcritureDate") for r in rows} == {"20261127"}
    assert {field(r, "PieceDate") for r in rows} == {"20261127"}
    assert [field(r, "ValidDate") for r in rows] == ["20261128"] * 10 + ["20261202"] * 19


def test_a_reversal_swaps_debit_and_credit() -> None:
    rows = list(fec_rows(ENTRIES[:2]))
    for original, cancel in zip(rows[:10], rows[10:], strict=True):
        assert field(cancel, "Debit") == field(original, "Credit")
        assert field(cancel, "Credit") == field(original, "Debit")


@pytest.mark.parametrize(
    ("debit", "credit", "fields"),
    [
        ("1000.00", "0.00", ("1000,00", "0,00")),
        ("0.00", "1234567.89", ("0,00", "1234567,89")),
        ("-12.50", "0.00", ("-12,50", "0,00")),
        ("0.05", "0.00", ("0,05", "0,00")),
    ],
)
def test_amounts_have_a_decimal_comma(debit: str, credit: str, fields: tuple[str, str]) -> None:
    row = only_row(one_line_entry(debit=debit, credit=credit))
    assert (field(row, "Debit"), field(row, "Credit")) == fields


@pytest.mark.parametrize(
    ("raw", "written"),
    [
        ("Le Petit\tZinc", "Le Petit Zinc"),
        ("Bar | Tabac", "Bar Tabac"),
        ("Chez\r\nMarcel\n", "Chez Marcel"),
        ("Le Petit Zinc 🍷", "Le Petit Zinc"),
        ("L’Œil de bœuf – €", "L'Œil de bœuf - €"),
        ("Ŝtudio ﬁn\u2028\u00a0", "Studio fin"),
        ("=SOMME(A1)", "=SOMME(A1)"),
        ("-Remise", "-Remise"),
    ],
)
def test_labels_are_cleaned_but_otherwise_kept(raw: str, written: str) -> None:
    assert fec_text(raw) == written
    row = only_row(one_line_entry(label=raw, account_label=raw, entry_label=raw))
    assert field(row, "EcritureLib") == written
    assert field(row, "CompteLib") == written


def test_empty_labels_fall_back_to_the_account_and_the_entry() -> None:
    row = only_row(one_line_entry(label="🍷", account_label=""))
    assert field(row, "EcritureLib") == LABEL
    assert field(row, "CompteLib") == "Ventes TVA 10%"
    with pytest.raises(ValueError, match="EcritureLib"):
        only_row(one_line_entry(label="", entry_label="\t"))


def test_numbers_must_increase_within_a_journal() -> None:
    first, second, third = ENTRIES
    assert len(list(fec_rows([first, third]))) == 19  # a business-day range may skip a number
    with pytest.raises(ValueError, match="order of their numbers"):
        list(fec_rows([second, first]))


def test_file_is_iso_8859_15(tmp_path: Path) -> None:
    out = tmp_path / "fec.txt"
    write_fec(ENTRIES, out)
    raw = out.read_bytes()
    assert "Écarts de caisse".encode("iso-8859-15") in raw
    assert b"\xc9carts de caisse (charges)" in raw  # É is 0xC9
    assert b"Esp\xe8ces Z412" in raw
    assert "É".encode() not in raw  # not UTF-8


def test_file_name() -> None:
    assert fec_filename("123456789", date(2026, 12, 31)) == "123456789FEC20261231.txt"
    with pytest.raises(ValueError, match="SIREN"):
        fec_filename("12345678", date(2026, 12, 31))

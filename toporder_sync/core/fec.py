"""The FEC export (Fichier des Écritures Comptables, LPF art. A47 A-1), as ``fec.md`` specifies.

What it promises:

* one record per entry line, the 18 fields in the legal order, after a header record naming
  them; entries in the order given, every line carrying its entry's number. The caller gives
  them ordered by number, which is the order of validation the text requires: numbers that do
  not increase within a journal are refused (``ValueError``). Gaps are the caller's business:
  a whole fiscal year has none, an export of some business days may skip an entry posted
  meanwhile for a day outside them;
* dates ``AAAAMMJJ``; amounts with a decimal comma, no thousands separator, a sign only when
  negative, and ``0,00`` on the empty side;
* fields separated by a tab, records ended by CRLF. The text allows "retour chariot et/ou
  saut de ligne"; CRLF is the one every reader takes, the DGFiP's test tool and the Windows
  software most accountants use included;
* the file is encoded in ISO-8859-15, a character set the text names (it holds ``€``, ``œ``
  and the French accents). Characters it cannot hold are transliterated: typographic quotes
  and dashes become their ASCII forms, others are decomposed (NFKD) and what still cannot be
  encoded is dropped (an emoji disappears, ``ŝ`` becomes ``s``);
* text fields never contain a tab, a ``|``, a line break or another control character: each
  becomes a space, and runs of spaces are collapsed. ``CompteLib`` and ``EcritureLib`` are
  never empty: an account without a label takes ``accounts.account_label``, a line without a
  label takes its entry's; an entry whose labels are all empty is refused.

A label that begins with ``=``, ``+``, ``-`` or ``@`` is kept as it is. The FEC is evidence,
not a spreadsheet: its labels must read exactly as in the ledger, and guarding against formula
injection belongs to whatever turns the file into a spreadsheet.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from toporder_sync.core.accounts import account_label
from toporder_sync.core.model import Entry
from toporder_sync.core.money import format_fr

FEC_FIELDS: tuple[str, ...] = (
    "JournalCode",
    "JournalLib",
    "EcritureNum",
    "EcritureDate",
    "CompteNum",
    "CompteLib",
    "CompAuxNum",
    "CompAuxLib",
    "PieceRef",
    "PieceDate",
    "EcritureLib",
    "Debit",
    "Credit",
    "EcritureLet",
    "DateLet",
    "ValidDate",
    "Montantdevise",
    "Idevise",
)
FEC_ENCODING = "iso-8859-15"
FIELD_SEPARATOR = "\t"
RECORD_END = "\r\n"

# Mandatory fields filled from free text here (dates and amounts always have a value).
_REQUIRED_TEXT: tuple[tuple[int, str], ...] = tuple(
    (FEC_FIELDS.index(name), name)
    for name in ("JournalCode", "JournalLib", "CompteNum", "CompteLib", "PieceRef", "EcritureLib")
)

_REPLACEMENTS = str.maketrans(
    {
        # Control characters (C0, DEL, C1), the other field separator and Unicode's line and
        # paragraph separators: any of them would break a record's alignment.
        **{chr(code): " " for code in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)},
        "|": " ",
        # Typographic quotes and dashes: NFKD leaves them alone and ISO-8859-15 lacks them.
        **dict.fromkeys("\u2018\u2019\u201a\u201b", "'"),
        **dict.fromkeys("\u201c\u201d\u201e", '"'),
        **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2212", "-"),
    }
)
_SPACES = re.compile(r"\s+")
_SIREN = re.compile(r"^[0-9]{9}$")


@dataclass(frozen=True, slots=True)
class FecEntry:
    """A posted entry as the FEC lists it: its number in the journal and its validation day."""

    number: int
    entry: Entry
    valid_date: date


def fec_text(text: str) -> str:
    """``text`` as a FEC field can hold it: in ISO-8859-15, on one line, without separators."""
    held = "".join(_held(char) for char in text.translate(_REPLACEMENTS))
    return _SPACES.sub(" ", held).strip()


def _held(char: str) -> str:
    try:
        char.encode(FEC_ENCODING)
    except UnicodeEncodeError:
        decomposed = unicodedata.normalize("NFKD", char)
        return decomposed.encode(FEC_ENCODING, "ignore").decode(FEC_ENCODING)
    return char


def _first_label(*candidates: str) -> str:
    return next((text for text in map(fec_text, candidates) if text), "")


def _fec_date(day: date) -> str:
    return day.strftime("%Y%m%d")


def fec_rows(entries: Iterable[FecEntry]) -> Iterator[tuple[str, ...]]:
    """The 18 fields of every line of ``entries``, in order (the header record excluded).

    The journal's code and label are each entry's own (``Entry.journal``, ``journal_label``).
    """
    last_numbers: dict[str, int] = {}
    for fec_entry in entries:
        entry = fec_entry.entry
        previous = last_numbers.get(entry.journal)
        if previous is not None and fec_entry.number <= previous:
            raise ValueError(
                f"journal {entry.journal}: entry {fec_entry.number} comes after entry "
                f"{previous}; the FEC lists entries in the order of their numbers"
            )
        last_numbers[entry.journal] = fec_entry.number
        for line in entry.lines:
            row = (
                fec_text(entry.journal),
                fec_text(entry.journal_label),
                str(fec_entry.number),
                _fec_date(entry.date),
                fec_text(line.account),
                _first_label(line.account_label, account_label(line.account)),
                "",
                "",
                fec_text(entry.piece_ref),
                _fec_date(entry.date),
                _first_label(line.label, entry.label),
                format_fr(line.debit),
                format_fr(line.credit),
                "",
                "",
                _fec_date(fec_entry.valid_date),
                "",
                "",
            )
            for index, name in _REQUIRED_TEXT:
                if not row[index]:
                    raise ValueError(f"entry {fec_entry.number}: {name} would be empty")
            yield row


def _render(rows: Sequence[tuple[str, ...]]) -> str:
    records = (FEC_FIELDS, *rows)
    return "".join(FIELD_SEPARATOR.join(record) + RECORD_END for record in records)


def render_fec(entries: Iterable[FecEntry]) -> str:
    """The whole FEC text: the header record, then one record per entry line."""
    return _render(list(fec_rows(entries)))


def write_fec(entries: Iterable[FecEntry], path: Path) -> int:
    """Write the FEC of ``entries`` to ``path`` in ISO-8859-15; return the entry lines written
    (the header record not counted)."""
    rows = list(fec_rows(entries))
    path.write_bytes(_render(rows).encode(FEC_ENCODING))
    return len(rows)


def fec_filename(siren: str, closing_date: date) -> str:
    """``<SIREN>FEC<AAAAMMJJ>.txt``, the date being the closing day of the fiscal year."""
    if not _SIREN.match(siren):
        raise ValueError(f"{siren!r} is not a SIREN (9 digits)")
    return f"{siren}FEC{_fec_date(closing_date)}.txt"

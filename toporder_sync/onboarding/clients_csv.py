"""The CSV file of ``clients import``: one client per row, read into specs or problems.

Promises:

* Pure: bytes in, a ``ParsedFile`` out; no database, no clock, no state kept between calls.
* Every problem is found, not the first one. Each is named by its line (where the record
  starts, the header being line 1), its column and the rule it breaks. A file that is not
  UTF-8, or is empty, is one problem of column ``file``. A record the CSV reader cannot read
  (an unclosed quote) stops the reading there: what follows cannot be told apart reliably.
* A row states a client's settings in full: an optional column left out of the header, or a
  cell left empty, means the default of ``clients activate`` (``OPTIONAL_COLUMNS``).
* The checks are those of the single-client commands (``clients.activate_client``,
  ``connections.set_source``, ``notifications.check_url``), on the same constants.
* Cells are stripped of surrounding spaces, a UTF-8 byte-order mark is allowed (spreadsheets
  write one) and rows whose cells are all empty are skipped (their trailing ``,,,,`` rows).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType
from typing import Any, Final
from zoneinfo import available_timezones

from toporder_sync.core.errors import ConfigurationError
from toporder_sync.core.model import Territory
from toporder_sync.ledger.clients import (
    CLIENT_ID_PATTERN,
    DEFAULT_DEADLINE_HOUR,
    DEFAULT_RUN_HOUR,
    DEFAULT_TIMEZONE,
)
from toporder_sync.ledger.connections import SOURCES
from toporder_sync.ledger.tables import ClosureSourceKind
from toporder_sync.notifications import check_url

# As the clients table's server default (migration 0003): Toporder pushes the closures.
DEFAULT_SOURCE: Final[ClosureSourceKind] = "push"

REQUIRED_COLUMNS: Final = ("id", "name", "activation_date")
# Each optional column and the text its empty cell stands for (empty webhook_url: none).
OPTIONAL_COLUMNS: Final[Mapping[str, str]] = MappingProxyType({
    "territory": Territory.METROPOLE.value,
    "timezone": DEFAULT_TIMEZONE,
    "run_hour": str(DEFAULT_RUN_HOUR),
    "deadline_hour": str(DEFAULT_DEADLINE_HOUR),
    "source": DEFAULT_SOURCE,
    "webhook_url": "",
})
COLUMNS: Final = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_HOUR = re.compile(r"[0-9]{1,2}")


@dataclass(frozen=True, slots=True)
class Problem:
    """One rule a row (or the file) breaks: where, which column, which rule."""

    line: int
    column: str
    rule: str

    def describe(self, file: str) -> str:
        """``FILE:LINE: column: rule``, the way compilers name a place in a file."""
        return f"{file}:{self.line}: {self.column}: {self.rule}"


@dataclass(frozen=True, slots=True)
class ClientSpec:
    """A client as one row of the file states it, checked and with its defaults filled in."""

    line: int
    client_id: str
    name: str
    activated_on: date
    territory: Territory
    timezone: str
    run_hour: int
    deadline_hour: int
    source: ClosureSourceKind
    webhook_url: str | None


@dataclass(frozen=True, slots=True)
class ParsedFile:
    """The rows that passed every check, and the problems of the others (by line)."""

    clients: tuple[ClientSpec, ...]
    problems: tuple[Problem, ...]


def parse(data: bytes) -> ParsedFile:
    """Read a clients file; its problems come sorted by line."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return _refused(Problem(line, "file", f"not UTF-8 (byte 0x{data[exc.start]:02x}): "
                                              "save the file as UTF-8"))
    if not text.strip():
        return _refused(Problem(1, "file", "empty: a header row naming the columns is required"))
    records, problems = _records(text)
    (header_line, header), rows = records[0], records[1:]
    positions = _columns(header_line, header, problems)
    checks = _checks(available_timezones())
    clients: list[ClientSpec] = []
    first_line: dict[str, int] = {}
    for line, record in rows:
        if not any(cell.strip() for cell in record):
            continue
        if len(record) != len(header):
            problems.append(Problem(line, "row", f"{len(record)} fields where the header names "
                                                 f"{len(header)}"))
            continue
        values, bad = _values(line, record, positions, checks)
        problems.extend(bad)
        client_id = values.get("id")
        if isinstance(client_id, str):
            if client_id in first_line:
                problems.append(Problem(line, "id", f"{client_id!r} is already on line "
                                                    f"{first_line[client_id]}"))
                continue
            first_line[client_id] = line
        if not bad and positions.keys() >= set(REQUIRED_COLUMNS):
            clients.append(ClientSpec(line=line, client_id=values["id"], name=values["name"],
                                      activated_on=values["activation_date"],
                                      territory=values["territory"], timezone=values["timezone"],
                                      run_hour=values["run_hour"],
                                      deadline_hour=values["deadline_hour"],
                                      source=values["source"], webhook_url=values["webhook_url"]))
    return ParsedFile(tuple(clients), tuple(sorted(problems, key=_order)))


def _refused(problem: Problem) -> ParsedFile:
    return ParsedFile((), (problem,))


def _order(problem: Problem) -> tuple[int, int]:
    position = COLUMNS.index(problem.column) if problem.column in COLUMNS else -1
    return problem.line, position


def _records(text: str) -> tuple[list[tuple[int, list[str]]], list[Problem]]:
    """Each record with the line it starts on; a record that cannot be read ends the list."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[tuple[int, list[str]]] = []
    problems: list[Problem] = []
    read_up_to = 0
    try:
        for record in reader:
            records.append((read_up_to + 1, record))
            read_up_to = reader.line_num
    except csv.Error as exc:
        problems.append(Problem(read_up_to + 1, "row", f"not readable as CSV ({exc}); "
                                                       "the rows after it were not read"))
    if not records:
        records.append((1, []))
    return records, problems


def _columns(line: int, header: list[str], problems: list[Problem]) -> dict[str, int]:
    """Where each known column is; unknown, repeated and missing columns become problems."""
    positions: dict[str, int] = {}
    for index, cell in enumerate(header):
        name = cell.strip()
        if name not in COLUMNS:
            # A spreadsheet set to French conventions separates with semicolons.
            hint = ("separate the columns with commas, not semicolons" if ";" in name
                    else f"the columns are {', '.join(COLUMNS)}")
            problems.append(Problem(line, name or f"column {index + 1}",
                                    f"unknown column ({hint})"))
        elif name in positions:
            problems.append(Problem(line, name, "named twice in the header"))
        else:
            positions[name] = index
    problems.extend(Problem(line, name, "required column missing from the header")
                    for name in REQUIRED_COLUMNS if name not in positions)
    return positions


def _values(line: int, record: list[str], positions: Mapping[str, int],
            checks: Mapping[str, Callable[[str], Any]]) -> tuple[dict[str, Any], list[Problem]]:
    """Each column's value (its default if absent or empty), or its problem."""
    values: dict[str, Any] = {}
    problems: list[Problem] = []
    for column in COLUMNS:
        cell = record[positions[column]].strip() if column in positions else ""
        if not cell and column in REQUIRED_COLUMNS:
            if column in positions:
                problems.append(Problem(line, column, "required, empty here"))
            continue
        try:
            values[column] = checks[column](cell or OPTIONAL_COLUMNS[column])
        except ValueError as exc:
            problems.append(Problem(line, column, str(exc)))
    return values, problems


def _checks(timezones: set[str]) -> Mapping[str, Callable[[str], Any]]:
    """How each column's text becomes its value (ValueError naming the rule broken).

    ``timezones`` is read once per file, not once per line: listing the IANA zones reads the
    whole zone database.
    """

    def timezone(cell: str) -> str:
        if cell not in timezones:
            raise ValueError(f"{cell!r} is not an IANA time zone name (e.g. Europe/Paris)")
        return cell

    return MappingProxyType({
        "id": _client_id, "name": str, "activation_date": _date, "territory": _territory,
        "timezone": timezone, "run_hour": _hour, "deadline_hour": _hour, "source": _source,
        "webhook_url": _webhook_url,
    })


def _client_id(cell: str) -> str:
    if not CLIENT_ID_PATTERN.fullmatch(cell):
        raise ValueError(f"{cell!r} is not a client id: 1 to 63 lowercase letters, digits or "
                         "'-', not starting with '-'")
    return cell


def _date(cell: str) -> date:
    try:
        if _DATE.fullmatch(cell):
            return date.fromisoformat(cell)
    except ValueError:
        pass
    raise ValueError(f"{cell!r} is not a date YYYY-MM-DD")


def _territory(cell: str) -> Territory:
    try:
        return Territory(cell)
    except ValueError:
        raise ValueError(f"{cell!r} is not one of {', '.join(t.value for t in Territory)}"
                         ) from None


def _hour(cell: str) -> int:
    if not _HOUR.fullmatch(cell) or int(cell) > 23:
        raise ValueError(f"{cell!r} is not an hour of the day (0 to 23)")
    return int(cell)


def _source(cell: str) -> ClosureSourceKind:
    for kind in SOURCES:
        if kind == cell:
            return kind
    raise ValueError(f"{cell!r} is not one of {', '.join(SOURCES)}")


def _webhook_url(cell: str) -> str | None:
    if not cell:
        return None
    try:
        return check_url(cell)
    except ConfigurationError as exc:
        raise ValueError(str(exc)) from None

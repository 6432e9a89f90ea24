"""Bounds at the door: what the ledger and every later step can hold, checked as a closure is read.

A closure that passes reading is stored, then run, possibly many times; a value it carries that
the ledger cannot store or Python cannot compute with fails every run, leaving the day stuck.
So these bounds are checked when the closure is read, before anything is stored
(``closure.load_document`` and ``closure.route``, used by ``receive``, the push receiver and the
pull source), and a breach is a POS error naming the field: Toporder must resend.

* ``bounds.digits``: a JSON number is written with at most ``MAX_NUMBER_CHARS`` characters;
* ``bounds.integer``: an integer is within ``MIN_INT``..``MAX_INT``, a signed 64-bit column;
* ``bounds.text``: no text, key or value, holds a NUL (PostgreSQL refuses it) or an unpaired
  surrogate (no UTF-8 encodes it);
* ``bounds.date``: a date or date-time is written with a year from ``FIRST_YEAR`` to
  ``LAST_YEAR``; and at receipt ``closure.business_date`` is not after ``DAYS_AHEAD`` days
  past today (UTC).

This module is the one place these bounds are set: the JSON Schema (``closure-v1.schema.json``)
carries the same ones (``maximum`` of ``closure.number``, ``TEXT_PATTERN`` on each free text,
``YEAR_PATTERN`` on each date and date-time), which the compiled check of a valid closure relies
on; a test fails if the two drift apart.

``findings`` is one pass over a decoded document; the JSON decoder's ``parse_int`` and
``parse_float`` hooks (``parse_int``, ``parse_float``) leave a number too long to convert as a
``LongNumber`` for it to report, with its path, rather than raising.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from toporder_sync.core.errors import Finding, pos_error

# Signed 64 bits: PostgreSQL's BIGINT and SQLite's INTEGER (``closures.closure_number``).
MIN_INT = -(2**63)
MAX_INT = 2**63 - 1
# Far above the 20 characters of MIN_INT, far below Python's 4,300-digit limit of int().
MAX_NUMBER_CHARS = 40
# Every date a closure holds is near its business day; years 2000 to 2999 keep any
# arithmetic on them (a day more, an offset, a timezone) far from ``date.min``/``date.max``.
FIRST_YEAR = 2000
LAST_YEAR = 2999
# A business day is closed before its closure is sent; the furthest ahead of UTC a client's
# day can be is 14 hours (UTC+14): two days leave a margin, a clock a little fast included.
DAYS_AHEAD = 2

DIGITS_RULE = "bounds.digits"
INTEGER_RULE = "bounds.integer"
TEXT_RULE = "bounds.text"
DATE_RULE = "bounds.date"

# The schema's patterns (JSON text); JSON decoding has already paired surrogates, so a
# surrogate code point left in a string is an unpaired one.
TEXT_PATTERN = "^[^\\u0000\\ud800-\\udfff]*$"
YEAR_PATTERN = "^2[0-9]{3}-"

_FORBIDDEN_TEXT = re.compile("[\x00\ud800-\udfff]")
_WRITTEN_YEAR = re.compile(r"(\d{4})-", re.ASCII)
# The fields holding a date or a date-time (tickets' ``closed_at`` apart).
DATE_FIELDS = ("business_date", "opened_at", "closed_at")


@dataclass(frozen=True, slots=True)
class LongNumber:
    """A JSON number whose text is over ``MAX_NUMBER_CHARS`` characters, left unconverted."""

    length: int


def parse_int(text: str) -> int | LongNumber:
    """``json.loads``'s ``parse_int``: a ``LongNumber`` rather than ``int()``'s ValueError."""
    return int(text) if len(text) <= MAX_NUMBER_CHARS else LongNumber(len(text))


def parse_float(text: str) -> Decimal | LongNumber:
    """``json.loads``'s ``parse_float``: a ``Decimal``, never a float."""
    return Decimal(text) if len(text) <= MAX_NUMBER_CHARS else LongNumber(len(text))


def text_problem(text: str) -> str | None:
    """What makes ``text`` impossible to store, or None."""
    found = _FORBIDDEN_TEXT.search(text)
    if found is None:
        return None
    character = found.group()
    what = "a NUL character" if character == "\x00" else "an unpaired surrogate"
    return (f"holds {what} (U+{ord(character):04X}) at character {found.start() + 1}, "
            "which no text column can store")


def year_problem(text: str) -> str | None:
    """Why the date or date-time ``text`` is out of bounds, or None (a text that does not
    start with a year is the format's to refuse, not the bounds')."""
    written = _WRITTEN_YEAR.match(text)
    if written is None or FIRST_YEAR <= int(written.group(1)) <= LAST_YEAR:
        return None
    return f"year {written.group(1)} is not from {FIRST_YEAR} to {LAST_YEAR}"


def business_date_problem(day: date, now: datetime) -> str | None:
    """Why ``day`` cannot be a business day already closed at ``now``, or None."""
    latest = now.date() + timedelta(days=DAYS_AHEAD)  # ``now`` in UTC, as every clock here
    if day > latest:
        return (f"{day.isoformat()} is after {latest.isoformat()}: a business day is closed "
                "before its closure is sent")
    return None


def _field(parts: tuple[str | int, ...]) -> str:
    """The JSON path of ``parts`` (``payments[1].method``); a key that is not plain text
    is written as a JSON string, escaped (``establishment["na\\u0000me"]``)."""
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _FORBIDDEN_TEXT.search(part):
            path += f"[{json.dumps(part)}]"
        else:
            path += f".{part}" if path else part
    return path or "$"


def findings(document: Any) -> list[Finding]:
    """Every value of the decoded ``document`` out of bounds (see the module docstring), in one
    pass: numbers, texts and keys anywhere; dates where the format has them."""
    found: list[Finding] = []
    # Iterative, not recursive: a document nested as deep as the decoder allows is walked too.
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(document, ())]
    while stack:
        node, path = stack.pop()
        if type(node) is dict:
            items: Any = node.items()
            for key, _ in items:
                if _FORBIDDEN_TEXT.search(key):
                    found.append(pos_error(TEXT_RULE, _field((*path, key)),
                                           f"the key {text_problem(key)}"))
        else:
            items = enumerate(node)
        for key, value in items:
            kind = type(value)
            if kind is str:
                if _FORBIDDEN_TEXT.search(value):
                    found.append(pos_error(TEXT_RULE, _field((*path, key)),
                                           f"the text {text_problem(value)}"))
            elif kind is int:
                if not MIN_INT <= value <= MAX_INT:
                    found.append(pos_error(INTEGER_RULE, _field((*path, key)),
                                           f"{value} is outside {MIN_INT}..{MAX_INT} "
                                           "(64 bits)"))
            elif kind is LongNumber:
                found.append(pos_error(DIGITS_RULE, _field((*path, key)),
                                       f"a number written with {value.length} characters; "
                                       f"at most {MAX_NUMBER_CHARS}"))
            elif kind is dict or kind is list:
                stack.append((value, (*path, key)))
    found.extend(_date_findings(document))
    return sorted(found, key=lambda f: f.field)


def _date_findings(document: Any) -> list[Finding]:
    found: list[Finding] = []
    head = document.get("closure") if type(document) is dict else None
    if type(head) is dict:
        for name in DATE_FIELDS:
            value = head.get(name)
            if type(value) is str and (problem := year_problem(value)):
                found.append(pos_error(DATE_RULE, f"closure.{name}", problem))
    tickets = document.get("tickets") if type(document) is dict else None
    for n, ticket in enumerate(tickets if type(tickets) is list else ()):
        value = ticket.get("closed_at") if type(ticket) is dict else None
        if type(value) is str and (problem := year_problem(value)):
            found.append(pos_error(DATE_RULE, f"tickets[{n}].closed_at", problem))
    return found

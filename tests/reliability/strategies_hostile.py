"""Hypothesis strategies for hostile closures: a valid document with values swapped at random.

``hostile_closures(integration_id, business_date)`` starts from
``tests/fixtures/samples/valid-metropole.json`` (routed to the given client and day, so that
most tries get past routing and reach the day's run) and replaces the values at one to three
random paths, leaves or whole objects and arrays, with values no POS should send:

* numbers: integers beyond 64 bits, 5000-digit integers and decimals, exponents such as
  ``1e999999``, negative zero, where strings, dates or amounts are expected;
* text of every Unicode category, NUL, lone surrogates and non-characters included, written
  as JSON ``\\u`` escapes (a lone surrogate cannot be encoded as UTF-8 raw: the escape is the
  only way a sender can deliver one), as values and as object keys;
* extreme dates and times: ``9999-12-31``, ``0001-01-01``, ``0000-00-00``, offsets of
  ``+23:59`` and beyond, leap seconds;
* every JSON type where another is expected: null, booleans, numbers, arrays, objects, and
  arrays or objects nested a few hundred to several thousand levels deep.

The document is written by ``HostileClosure.raw`` with a small JSON writer of its own, since
``json.dumps`` cannot write a number literal of 5000 digits (``Raw``) nor keep ``\\u0000``
and ``\\ud800`` as escapes in a UTF-8 body while writing every other character raw.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

BASE = Path(__file__).parent.parent / "fixtures" / "samples" / "valid-metropole.json"

# One profile for every fuzzer of the suite: reproducible (derandomize, no example database,
# so CI replays the same inputs), no deadline (a PostgreSQL round trip is not a failure), and
# no health check on the size or slowness of the hostile inputs, which are slow on purpose.
settings.register_profile(
    "reliability-fuzz",
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much, HealthCheck.large_base_example],
)
FUZZ_SETTINGS = settings.get_profile("reliability-fuzz")


@dataclass(frozen=True, slots=True)
class Raw:
    """A JSON fragment written as is: a number no Python ``json`` writer accepts, deep nesting."""

    text: str

    def __repr__(self) -> str:
        shown = self.text if len(self.text) <= 40 else f"{self.text[:20]}…{self.text[-10:]}"
        return f"Raw({shown!r}, {len(self.text)} chars)"


def write(value: Any) -> str:
    """JSON text of ``value``: ``Raw`` as is, text with NUL, surrogates and other control or
    non-character code points as ``\\u`` escapes and every other character raw (UTF-8)."""
    if isinstance(value, Raw):
        return value.text
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ",".join(write(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{_string(key)}:{write(item)}" for key, item in value.items()) + "}"
    raise TypeError(f"no JSON for {type(value).__name__}")


def _string(text: str) -> str:
    out = ['"']
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif code < 0x20 or 0xD800 <= code <= 0xDFFF or code in (0x7F, 0xFFFE, 0xFFFF):
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


Path_ = tuple[str | int, ...]


def paths(node: Any, path: Path_ = ()) -> list[Path_]:
    """Every path of ``node`` below its root, objects and arrays as well as leaves."""
    found: list[Path_] = []
    if isinstance(node, dict):
        for key, value in node.items():
            found.append((*path, key))
            found.extend(paths(value, (*path, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.append((*path, index))
            found.extend(paths(value, (*path, index)))
    return found


def replaced(document: Any, path: Path_, value: Any) -> Any:
    """A copy of ``document`` with ``value`` at ``path`` (the rest shared, never mutated)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(document, dict):
        return {**document, str(head): replaced(document[head], rest, value)}
    copy = list(document)
    copy[int(head)] = replaced(copy[int(head)], rest, value)
    return copy


# --- hostile values -------------------------------------------------------------------------

_BIG = 2**63
huge_integers: st.SearchStrategy[int] = st.one_of(
    st.integers(_BIG - 2, _BIG + 2), st.integers(-_BIG - 2, -_BIG + 2),
    st.integers(2**64, 2**1000), st.integers(-(2**1000), -(2**64)),
)


@st.composite
def _long_number(draw: st.DrawFn) -> Raw:
    digits = draw(st.integers(300, 5000))
    sign = draw(st.sampled_from(("", "-")))
    kind = draw(st.sampled_from(("int", "fraction", "exponent")))
    body = "9" * digits if draw(st.booleans()) else "1" + "0" * (digits - 1)
    if kind == "int":
        return Raw(sign + body)
    if kind == "fraction":
        return Raw(f"{sign}0.{body}" if draw(st.booleans()) else f"{sign}{body}.5")
    return Raw(f"{sign}1e{body[:draw(st.integers(3, 9))]}")


huge_numbers: st.SearchStrategy[Any] = st.one_of(
    huge_integers,
    _long_number(),
    st.sampled_from((Raw("1e999999"), Raw("-1e999999"), Raw("1e-999999"), Raw("-0"),
                     Raw("-0.0"), Raw("0e0"), Raw("1E+308"), Raw("4.9e-324"),
                     Raw("123456789012345678901234567890.12"))),
    # The same as strings where an amount string is expected.
    st.builds(str, huge_integers),
    _long_number().map(lambda raw: raw.text),
)

# Every Unicode category, the surrogates (Cs) and NUL included; most characters drawn from the
# dangerous few so that short strings still carry them.
hostile_text: st.SearchStrategy[str] = st.one_of(
    st.text(st.characters(codec=None), min_size=0, max_size=40),
    st.text(st.sampled_from(("\x00", "\ud800", "\udfff", "\ud83d", "\ufffe", "\uffff",
                             "\u202e", "\u200b", "\x1b", "\x7f", "\u0301", "\U0010ffff",
                             "a", "é")), min_size=1, max_size=12),
    st.sampled_from(("\x00", "\ud800", "Esp\x00èces", "Carte\udc00Bancaire", "", " ",
                     "\u00a0", "0" * 5000, "é" * 2000)),
)

extreme_dates: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(("9999-12-31", "0001-01-01", "0000-01-01", "0000-00-00", "2026-02-29",
                     "2024-02-29", "2026-11-31", "10000-01-01", "-0001-01-01", "2026-1-1",
                     "2026-11-27T00:00:00Z", "1970-01-01", "2038-01-19", "2262-04-11",
                     "1677-09-21", "9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00+14:00",
                     "2026-11-27T23:59:60+01:00", "2026-11-27T10:00:00+23:59",
                     "2026-11-27T10:00:00-23:59", "2026-11-27T10:00:00+99:99",
                     "2026-11-27T10:00:00.999999999Z", "9999-12-31T23:59:59.999999-23:59",
                     "0001-01-01T00:00:00-23:59")),
    st.dates().map(date.isoformat),
    st.datetimes().map(lambda moment: moment.isoformat() + "Z"),
)


@st.composite
def _deep(draw: st.DrawFn) -> Raw:
    depth = draw(st.sampled_from((200, 900, 1000, 3000, 20_000)))
    opening, closing = draw(st.sampled_from((("[", "]"), ('{"a":', "}"))))
    return Raw(opening * depth + "1" + closing * depth)


wrong_types: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.just(Decimal("1.5")),
    st.just([]), st.just({}), st.lists(st.integers(), max_size=3),
    st.dictionaries(hostile_text, st.integers(), max_size=2), _deep(),
)

hostile_values: st.SearchStrategy[Any] = st.one_of(
    huge_numbers, hostile_text, extreme_dates, wrong_types,
)


class HostileClosure:
    """A valid closure with ``changes`` applied: (path, value), or (path + (key,), value)
    to add a key that was not there. ``raw`` is what is sent.

    Not a dataclass: Hypothesis prints a dataclass field by field, this one by its changes.
    """

    __slots__ = ("changes", "raw")

    def __init__(self, changes: tuple[tuple[Path_, Any], ...], raw: bytes) -> None:
        self.changes = changes
        self.raw = raw

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # Hypothesis's printer
        printer.text(repr(self))

    def __repr__(self) -> str:
        shown = ", ".join(f"{'.'.join(map(str, path)) or '$'} = {value!r}"
                          for path, value in self.changes)
        return f"HostileClosure({shown})"


def base_document(integration_id: str, business_date: date) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(BASE.read_text(encoding="utf-8"))
    document["integration_id"] = integration_id
    document["closure"]["business_date"] = business_date.isoformat()
    return document


@st.composite
def _hostile_closure(draw: st.DrawFn, integration_id: str,
                     business_dates: tuple[date, ...]) -> HostileClosure:
    document: Any = base_document(integration_id, draw(st.sampled_from(business_dates)))
    changes: list[tuple[Path_, Any]] = []
    for _ in range(draw(st.integers(1, 3))):
        candidates = paths(document)
        path = draw(st.sampled_from(candidates))
        if draw(st.integers(0, 9)) == 0:  # a new key beside the chosen one
            parent = path[:-1]
            node = document
            for part in parent:
                node = node[part]
            if isinstance(node, dict):
                path = (*parent, draw(hostile_text))
                value = draw(hostile_values)
                document = replaced(document, parent, {**node, str(path[-1]): value})
                changes.append((path, value))
                continue
        value = draw(hostile_values)
        document = replaced(document, path, value)
        changes.append((path, value))
    return HostileClosure(tuple(changes), write(document).encode("utf-8"))


def hostile_closures(integration_id: str,
                     business_dates: tuple[date, ...]) -> st.SearchStrategy[HostileClosure]:
    """Closures of the client ``integration_id`` for one of ``business_dates``, with one to
    three values swapped for hostile ones (see the module's docstring)."""
    return _hostile_closure(integration_id, business_dates)

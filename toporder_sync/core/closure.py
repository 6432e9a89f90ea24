"""Reading a closure: strict UTF-8 JSON in, a ``Closure`` record out, or every problem at once.

Promises: no amount ever passes through a float (JSON numbers are read as ``Decimal`` and then
refused by the schema where an amount is expected); NaN, Infinity, a duplicated key, a byte
order mark, invalid UTF-8, a document over ``MAX_CLOSURE_BYTES``, an unknown field or a wrong
``schema`` tag are refused; so is a value the ledger or a later step could not hold (a number
too long or beyond 64 bits, a NUL or an unpaired surrogate in a text, a year far off:
``bounds``), whatever path the document takes. Each problem names the path of the offending
field (``payments[1].amount``). Problems found here are POS errors: Toporder must resend.

One reader, ``parse_closure``: the document is decoded and passed by a compiled check of the
JSON Schema in one go (``_read``); what that check refuses (or a stricter check alone refuses)
is decoded again by ``load_document`` and checked by ``jsonschema`` only to name every problem.
Both end in the same records. A day's ticket lines and payments are checked and read once per
distinct one (a few dozen sales repeated); a caller reading many closures may keep them across
closures in a ``LineCache`` it owns and passes: payments and lines recur from day to day.

This module holds no mutable state. The JSON Schema and its compiled checks (``_SCHEMA``,
``_VALIDATOR``, ``_CHECKS``) are built once, at import, from the constant schema file shipped
with the package: constants, read-only, the same in every process.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from importlib import resources
from typing import Any, NamedTuple

import fastjsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from toporder_sync.core import bounds
from toporder_sync.core.errors import ClosureRejected, Finding, pos_error
from toporder_sync.core.model import (
    CashCount,
    Closure,
    LineKind,
    MethodAmount,
    Ticket,
    TicketLine,
    VatLine,
)
from toporder_sync.core.money import ZERO, parse_amount, parse_rate

MAX_CLOSURE_BYTES = 8 * 1024 * 1024
SCHEMA_TAG = "toporder.closure/v1"
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})$")


class _Refused(ValueError):
    """Raised inside the JSON decoder's hooks; turned into a finding by ``load_document``."""


def _reject_constant(name: str) -> Any:
    raise _Refused(f"{name} is not allowed: amounts are decimal strings")


def _unique_keys(pairs: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"duplicated key {key!r}: which value counts would be a guess")
            seen.add(key)
    return document


def _refusal(source: str, rule: str, message: str) -> ClosureRejected:
    return ClosureRejected(source, [pos_error(rule, "$", message)])


def _text(raw: bytes, source: str) -> str:
    """The document's text: at most ``MAX_CLOSURE_BYTES`` of UTF-8 without a byte order mark."""
    if len(raw) > MAX_CLOSURE_BYTES:
        raise _refusal(source, "size",
                       f"{len(raw)} bytes is over the {MAX_CLOSURE_BYTES}-byte limit")
    if raw.startswith(b"\xef\xbb\xbf"):
        raise _refusal(source, "encoding", "starts with a UTF-8 byte order mark; send plain UTF-8")
    try:
        return raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise _refusal(source, "encoding",
                       f"not UTF-8: invalid byte at offset {exc.start}") from exc


def load_document(raw: bytes, source: str) -> dict[str, Any]:
    """Decode strict UTF-8 JSON into a dict; numbers become Decimal or int, never float.

    A document holding a value out of ``bounds`` is refused with every such value named.
    """
    text = _text(raw, source)
    try:
        document = json.loads(
            text,
            parse_int=bounds.parse_int,
            parse_float=bounds.parse_float,
            parse_constant=_reject_constant,
            object_pairs_hook=_unique_keys,
        )
    except _Refused as exc:
        raise _refusal(source, "json", str(exc)) from exc
    except json.JSONDecodeError as exc:
        raise _refusal(
            source, "json", f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except RecursionError as exc:
        raise _refusal(source, "json", "not valid JSON: arrays or objects nested too deeply"
                       ) from exc
    if not isinstance(document, dict):
        raise _refusal(source, "json", "the document must be a JSON object")
    out_of_bounds = bounds.findings(document)
    if out_of_bounds:
        raise ClosureRejected(source, out_of_bounds)
    return document


@dataclass(frozen=True, slots=True)
class Routing:
    """What a delivery needs to know before storing a closure: whose day it is."""

    integration_id: str
    business_date: date
    establishment_id: str | None
    number: int | None
    perpetual_total: Decimal | None


def route(document: dict[str, Any], source: str, *, now: datetime | None = None) -> Routing:
    """Read the routing fields of a document ``load_document`` gave, leniently for everything
    else; given ``now``, a business date after it (``bounds.business_date_problem``) is refused.
    """
    integration_id = document.get("integration_id")
    closure = document.get("closure")
    closure = closure if isinstance(closure, dict) else {}
    business_date = closure.get("business_date")
    findings: list[Finding] = []
    if not isinstance(integration_id, str) or not integration_id:
        findings.append(pos_error("routing", "integration_id", "missing or not a string"))
    if not isinstance(business_date, str) or not _DATE.match(business_date):
        findings.append(pos_error("routing", "closure.business_date", "missing or not YYYY-MM-DD"))
    else:
        try:
            day = date.fromisoformat(business_date)
        except ValueError:
            findings.append(pos_error("routing", "closure.business_date", "not a calendar date"))
        else:
            ahead = None if now is None else bounds.business_date_problem(day, now)
            if ahead is not None:
                findings.append(pos_error(bounds.DATE_RULE, "closure.business_date", ahead))
    if findings:
        raise ClosureRejected(source, findings)
    establishment = document.get("establishment")
    grand_total = closure.get("grand_total")
    perpetual = grand_total.get("perpetual") if isinstance(grand_total, dict) else None
    number = closure.get("number")
    try:
        perpetual_total = parse_amount(perpetual) if isinstance(perpetual, str) else None
    except ValueError:
        perpetual_total = None
    return Routing(
        integration_id=str(integration_id),
        business_date=day,
        establishment_id=(
            establishment.get("id")
            if isinstance(establishment, dict) and isinstance(establishment.get("id"), str)
            else None
        ),
        number=number if type(number) is int else None,
        perpetual_total=perpetual_total,
    )


def _inline_refs(node: Any, definitions: dict[str, Any]) -> Any:
    """The schema with every local ``#/$defs/…`` reference replaced by its definition.

    Same validation, same error paths; but ``jsonschema`` no longer resolves a reference for
    each amount of each ticket line, which was two thirds of the time spent reading a closure.
    """
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/") and len(node) == 1:
            return _inline_refs(definitions[ref.removeprefix("#/$defs/")], definitions)
        return {key: _inline_refs(value, definitions) for key, value in node.items()
                if key != "$defs"}
    if isinstance(node, list):
        return [_inline_refs(item, definitions) for item in node]
    return node


def _load_schema() -> dict[str, Any]:
    text = resources.files("toporder_sync.schemas").joinpath("closure-v1.schema.json").read_text(
        encoding="utf-8"
    )
    schema: dict[str, Any] = json.loads(text)
    inlined: dict[str, Any] = _inline_refs(schema, schema.get("$defs", {}))
    return inlined


# The closure's JSON Schema (``$ref`` inlined) and its validator: constants built at import.
_SCHEMA = _load_schema()
_VALIDATOR = Draft202012Validator(_SCHEMA)


class _Checks(NamedTuple):
    """Compiled checks of the schema; each returns what it checks, or raises."""

    document: Callable[[Any], Any]  # without its tickets' lines and payments
    line: Callable[[Any], Any]  # one ticket line
    payment: Callable[[Any], Any]  # one ticket payment


def _compile() -> _Checks:
    """The compiled checks of the schema (``_Checks``), built once at import (``_CHECKS``).

    ``fastjsonschema`` generates Python code for the schema: much faster than ``jsonschema``'s
    interpreter (measured: docs/architecture.md, "Measured choices"), but it stops at the first
    problem and words it its own way. So it only answers "valid" (``_read``); any other answer
    goes to ``jsonschema``, whose findings are the ones reported. It may be stricter than
    ``jsonschema``, never looser, on this schema: it checks the same keywords (draft 2020-12's
    ``items`` with one schema is draft-07's), its patterns end in ``\\Z`` where ours end in
    ``$``, and ``format`` is left out of both, as draft 2020-12 makes it an annotation (dates
    are checked while reading).
    """
    schema = {key: value for key, value in _SCHEMA.items() if key not in ("$schema", "$id")}
    document_schema = copy.deepcopy(schema)
    ticket = document_schema["properties"]["tickets"]["items"]["properties"]
    line_schema, payment_schema = ticket["lines"].pop("items"), ticket["payments"].pop("items")
    return _Checks(*(fastjsonschema.compile(part, use_default=False, use_formats=False)
                     for part in (document_schema, line_schema, payment_schema)))


_CHECKS = _compile()


# A decoded JSON object as the tuple of its (key, value) pairs.
Pairs = tuple[tuple[str, Any], ...]
# A ticket's lines and payments, as read.
TicketParts = tuple[tuple[TicketLine, ...], tuple[MethodAmount, ...]]


class LineCache:
    """Records of ticket lines and payments already checked and read, keyed by their text (a
    decoded object's pairs), which a caller reading many closures owns and passes to
    ``parse_closure``: a restaurant sells the same lines day after day, and payments recur from
    day to day and from client to client (about 60 % of them in simulated catch-ups), so one
    equal to one already read is neither checked nor read again, and shares its record.

    A record is a function of its text alone: a cache shared by any closures, clients or
    threads gives what a fresh one gives. It holds at most ``limit`` lines and ``limit``
    payments; a full table is emptied and fills again with what the next days show.
    """

    __slots__ = ("limit", "lines", "payments")

    def __init__(self, limit: int = 8192) -> None:
        if limit < 1:
            raise ValueError(f"limit must be 1 or more, not {limit}")
        self.limit = limit
        self.lines: dict[Pairs, TicketLine] = {}
        self.payments: dict[Pairs, MethodAmount] = {}

    def line(self, pairs: Pairs) -> TicketLine:
        """The record of a line not in ``lines`` yet (what ``_checked_line`` raises else)."""
        record = _checked_line(pairs)
        if len(self.lines) >= self.limit:
            self.lines.clear()
        self.lines[pairs] = record
        return record

    def payment(self, pairs: Pairs) -> MethodAmount:
        """``line`` for a ticket's payment."""
        record = _checked_payment(pairs)
        if len(self.payments) >= self.limit:
            self.payments.clear()
        self.payments[pairs] = record
        return record


def _read(raw: bytes, source: str,
          known: LineCache) -> tuple[dict[str, Any], list[TicketParts]] | None:
    """A closure the compiled checks pass (nearly every one), read in one go: its document,
    and its tickets' lines and payments as records (through ``known``); None for any other,
    which ``load_document`` and ``jsonschema`` then read, and report on.

    The JSON is decoded with each object as its pairs (``object_pairs_hook=tuple``, in C)
    rather than through a Python hook making a dict of each, which costs more (measured:
    docs/architecture.md, "Measured choices"). ``_object`` makes the dicts afterwards,
    refusing a duplicated key as ``_unique_keys`` does, but for the tickets' lines and
    payments: those stay pairs, each the key of its record in ``known``. Only pairs of strings
    are ever kept, and no other JSON value equals a string: equal pairs are equal text. Every
    other object becomes a dict, so the compiled check never takes an object for an array; a
    value that is not an object's pairs, or an unhashable one (an array), makes the closure
    "not valid". So does a value out of ``bounds``: the schema carries them (a number too long
    to convert is left a ``bounds.LongNumber``, which no schema type takes), and
    ``load_document`` then names it.
    """
    text = _text(raw, source)
    lines, payments = known.lines.get, known.payments.get
    try:
        decoded = json.loads(text, parse_int=bounds.parse_int,
                             parse_float=bounds.parse_float, parse_constant=_reject_constant,
                             object_pairs_hook=tuple)
        document = _object(_pairs(decoded), _DOCUMENT_ARRAYS)
        _CHECKS.document(document)
        # (a record is never false: ``or`` reads the records only for pairs not known)
        return document, [
            (tuple([lines(pairs) or known.line(pairs) for pairs in ticket["lines"]]),
             tuple([payments(pairs) or known.payment(pairs) for pairs in ticket["payments"]]))
            for ticket in document.get("tickets", ())]
    except (ValueError, TypeError, RecursionError):  # JSON, schema, or a duplicated key
        return None


def _pairs(value: Any) -> Pairs:
    """``value`` if it is a decoded object's pairs (TypeError otherwise)."""
    if type(value) is not tuple:
        raise TypeError("not a JSON object")
    return value


# How the arrays under some keys of an object are made (``_object``).
Arrays = Mapping[str, Callable[[list[Any]], list[Any]]]
_NO_ARRAYS: Arrays = {}


def _object(pairs: Pairs, arrays: Arrays = _NO_ARRAYS) -> dict[str, Any]:
    """The dict of a decoded object, the objects inside it made dicts too; ``arrays``: how the
    array under a key is made (else ``_array``). A duplicated key is refused (``_Refused``, by
    ``_unique_keys``)."""
    made = _unique_keys(pairs)
    for key, value in made.items():  # values replaced, none added: the dict keeps its size
        if type(value) is tuple:
            made[key] = _object(value)
        elif type(value) is list:
            made[key] = arrays.get(key, _array)(value)
    return made


def _array(items: list[Any]) -> list[Any]:
    return [_object(item) if type(item) is tuple else _array(item) if type(item) is list
            else item for item in items]


def _tickets(items: list[Any]) -> list[Any]:
    return [_object(item, _TICKET_ARRAYS) if type(item) is tuple else item for item in items]


def _as_decoded(items: list[Any]) -> list[Any]:
    return items


_DOCUMENT_ARRAYS: Arrays = {"tickets": _tickets}
# A ticket's lines and payments are read as pairs (``_read``).
_TICKET_ARRAYS: Arrays = {"lines": _as_decoded, "payments": _as_decoded}


def _checked_line(pairs: Pairs) -> TicketLine:
    """The record of a line given as its pairs, which the compiled line check passes (else
    what it raises): a function of the line's text alone (``LineCache``)."""
    line = _object(_pairs(pairs))
    _CHECKS.line(line)
    return _ticket_line(line, parse_rate, parse_amount)


def _checked_payment(pairs: Pairs) -> MethodAmount:
    """``_checked_line`` for a ticket's payment."""
    payment = _object(_pairs(pairs))
    _CHECKS.payment(payment)
    return MethodAmount(payment["method"], parse_amount(payment["amount"]))


def _path(parts: Any) -> str:
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "$"


def _schema_message(error: ValidationError) -> str:
    instance = error.instance
    match error.validator:
        case "type" if isinstance(instance, Decimal | int) and not isinstance(instance, bool):
            return (f"{instance} is a JSON number; amounts and rates are strings "
                    '(e.g. "1100.00")')
        case "pattern" if error.validator_value == bounds.TEXT_PATTERN and isinstance(
                instance, str):
            return f"the text {bounds.text_problem(instance)}"
        case "pattern" if error.validator_value == bounds.YEAR_PATTERN:
            return (f"{instance!r} does not start with a year from {bounds.FIRST_YEAR} to "
                    f"{bounds.LAST_YEAR}")
        case "pattern":
            return f"{instance!r} is not a decimal string with at most two decimals"
        case "additionalProperties":
            return f"unknown field: {error.message.split('(')[-1].rstrip(')')}"
        case "required":
            return f"missing field: {error.message.split(' is a required')[0]}"
        case "const":
            return f"{instance!r} is not {error.validator_value!r}"
    return error.message


def _schema_findings(document: dict[str, Any]) -> list[Finding]:
    """What ``jsonschema`` finds wrong in the document (nothing, for a valid one)."""
    return [
        pos_error(f"schema.{error.validator}", _path(error.absolute_path), _schema_message(error))
        for error in sorted(_VALIDATOR.iter_errors(document), key=lambda e: repr(list(e.path)))
    ]


def _parsed_datetime(value: str) -> datetime | None:
    if _DATETIME.match(value):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _datetime(value: str, field: str, findings: list[Finding]) -> datetime:
    parsed = _parsed_datetime(value)
    if parsed is None:
        findings.append(pos_error("schema.format", field,
                                  f"{value!r} is not an ISO 8601 date-time with an offset"))
        return _EPOCH
    return parsed


def _ticket_closed_at(value: str, n: int, findings: list[Finding]) -> datetime:
    """``_datetime`` of ``tickets[n].closed_at``, the field named only if it is wrong."""
    parsed = _parsed_datetime(value)
    return _datetime(value, f"tickets[{n}].closed_at", findings) if parsed is None else parsed


_EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")
_KINDS = {kind.value: kind for kind in LineKind}


def _memo(parse: Callable[[str], Decimal]) -> Callable[[str], Decimal]:
    """``parse`` remembering its answers: a day's thousand lines repeat a few dozen prices."""
    seen: dict[str, Decimal] = {}

    def parse_once(text: str) -> Decimal:
        value = seen.get(text)
        if value is None:
            value = seen[text] = parse(text)
        return value

    return parse_once


def _ticket_line(line: dict[str, str], rate: Callable[[str], Decimal],
                 amount: Callable[[str], Decimal]) -> TicketLine:
    """The record of a line the schema passed (``vat_rate`` is absent, never null, then)."""
    vat_rate = line.get("vat_rate")
    return TicketLine(_KINDS[line["kind"]], None if vat_rate is None else rate(vat_rate),
                      amount(line["gross"]))


def _vat_lines(items: list[dict[str, str]]) -> tuple[VatLine, ...]:
    return tuple(
        VatLine(parse_rate(i["vat_rate"]), parse_amount(i["net"]), parse_amount(i["vat"]),
                parse_amount(i["gross"]))
        for i in items
    )


def _method_amounts(items: list[dict[str, str]],
                    amount: Callable[[str], Decimal] = parse_amount) -> tuple[MethodAmount, ...]:
    return tuple(MethodAmount(i["method"], amount(i["amount"])) for i in items)


def parse_closure(raw: bytes, source: str, lines: LineCache | None = None) -> Closure:
    """Read one closure document. Raises ``ClosureRejected`` with every problem found.

    ``lines``: the records of lines and payments already read, kept by a caller reading many
    closures (``LineCache``); without it, those of this closure alone."""
    read = _read(raw, source, LineCache() if lines is None else lines)
    if read is not None:
        document, parts = read
    else:  # not valid, or refused by the compiled checks alone (stricter)
        document = load_document(raw, source)
        problems = _schema_findings(document)
        if problems:
            raise ClosureRejected(source, problems)
        amount, rate = _memo(parse_amount), _memo(parse_rate)
        parts = [(tuple(_ticket_line(line, rate, amount) for line in t["lines"]),
                  _method_amounts(t["payments"], amount))
                 for t in document.get("tickets", [])]
    findings: list[Finding] = []
    head = document["closure"]
    day_text = head["business_date"]
    business_date = date(1970, 1, 1)
    if _DATE.match(day_text):
        try:
            business_date = date.fromisoformat(day_text)
        except ValueError:
            findings.append(pos_error("schema.format", "closure.business_date",
                                      f"{day_text!r} is not a calendar date"))
    else:
        findings.append(pos_error("schema.format", "closure.business_date",
                                  f"{day_text!r} is not YYYY-MM-DD"))
    opened_at = _datetime(head["opened_at"], "closure.opened_at", findings)
    closed_at = _datetime(head["closed_at"], "closure.closed_at", findings)
    tickets = tuple(
        Ticket(t["number"], _ticket_closed_at(t["closed_at"], n, findings), lines, payments)
        for n, (t, (lines, payments)) in enumerate(zip(document.get("tickets", []), parts,
                                                      strict=True))
    )
    if findings:
        raise ClosureRejected(source, findings)
    cash = document.get("cash_count")
    return Closure(
        integration_id=document["integration_id"],
        establishment_id=document["establishment"]["id"],
        establishment_name=document["establishment"]["name"],
        number=head["number"],
        business_date=business_date,
        opened_at=opened_at,
        closed_at=closed_at,
        currency=head["currency"],
        period_total=parse_amount(head["grand_total"]["period"]),
        perpetual_total=parse_amount(head["grand_total"]["perpetual"]),
        sales=_vat_lines(document["sales"]),
        refunds=_vat_lines(document.get("refunds", [])),
        payments=_method_amounts(document["payments"]),
        tips=_method_amounts(document.get("tips", [])),
        gift_cards_sold=parse_amount(document["gift_cards"]["sold"])
        if "gift_cards" in document
        else ZERO,
        cash_count=CashCount(cash["method"], parse_amount(cash["expected"]),
                             parse_amount(cash["counted"]))
        if cash
        else None,
        tickets=tickets,
    )

"""The pure pipeline of one client-day: read → validate → map → build.

Each stage takes plain values and returns values plus findings, like beancount's loader; none
touches a database, the network or Prefect, so the whole accounting of a day is tested by
calling ``process``. Errors never stop the stages that can still teach something: a closure
with a POS error still has its payment methods matched, so that they are remembered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from toporder_sync.core import accounts
from toporder_sync.core.closure import LineCache, parse_closure
from toporder_sync.core.entry import build_entry, check_entry_lines
from toporder_sync.core.errors import (
    Category,
    ClosureRejected,
    Finding,
    error_category,
    ledger_error,
    pos_error,
)
from toporder_sync.core.mapping import MappingResult, match_methods
from toporder_sync.core.model import ClientSettings, Closure, Entry, MethodMatch, PreviousClosure
from toporder_sync.core.money import AMOUNT_LIMIT, CENT, format_display
from toporder_sync.core.validate import validate_closure

_d = format_display


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the pipeline made of one closure: an entry to post, or the reasons not to."""

    closure: Closure | None
    matches: tuple[MethodMatch, ...]
    entry: Entry | None
    findings: tuple[Finding, ...]

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.is_error)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if not f.is_error)

    @property
    def category(self) -> Category | None:
        return error_category(self.findings)


def read(
    raw: bytes, source: str, *, integration_id: str, lines: LineCache | None = None
) -> tuple[Closure | None, tuple[Finding, ...]]:
    """Parse a closure and check that it belongs to the client it is read for; ``lines``: the
    caller's records of lines and payments already read (``closure.LineCache``), if it keeps
    some across closures."""
    try:
        closure = parse_closure(raw, source, lines)
    except ClosureRejected as rejected:
        return None, rejected.findings
    if closure.integration_id != integration_id:
        return None, (pos_error("integration_id", "integration_id",
                                "this closure carries another client's integration identifier"),)
    return closure, ()


def check_settings(settings: ClientSettings) -> tuple[Finding, ...]:
    """Ledger-side errors in a client's account overrides (caught before anything is built)."""
    return tuple(
        ledger_error("account_override_invalid", f"accounts[{key!r}]", problem)
        for key, account in settings.account_overrides.items()
        if (problem := (accounts.account_problem(account, key) if key in accounts.ACCOUNT_KEYS
                        else f"{key!r} is not an account key"))
    )


def validate(closure: Closure, settings: ClientSettings,
             previous: PreviousClosure | None = None) -> tuple[Finding, ...]:
    """POS errors and warnings of the closure, and ledger-side errors of the client's accounts."""
    return (*validate_closure(closure, settings.territory, previous), *check_settings(settings))


def map_methods(closure: Closure, settings: ClientSettings) -> MappingResult:
    return match_methods((p.method for p in closure.payments), settings)


def build(closure: Closure, settings: ClientSettings, mapping: MappingResult) -> Entry:
    """The entry of a valid closure, its lines checked (``InvalidEntryError`` is a core bug)."""
    entry = build_entry(closure, settings, mapping)
    check_entry_lines(entry)
    return entry


def beyond_the_ledger(entry: Entry) -> tuple[Finding, ...]:
    """POS errors for the entry lines of more euros than any amount may be (``AMOUNT_LIMIT``:
    12 integer digits, the ledger's ``Numeric(14, 2)``). Each amount of a valid closure is
    below it, but the lines add up amounts (several methods on one account, gift cards and
    sales): only a day of trillions gets there, and it must not reach the ledger."""
    return tuple(
        pos_error("amount_range", "closure",
                  f"{line.label}: {_d(line.debit or line.credit)} on account {line.account} "
                  f"is over the {_d(AMOUNT_LIMIT - CENT)} an amount may be")
        for line in entry.lines if max(line.debit, line.credit) >= AMOUNT_LIMIT)


def process(raw: bytes, source: str, settings: ClientSettings, *, integration_id: str,
            previous: PreviousClosure | None = None, lines: LineCache | None = None) -> Outcome:
    """The whole accounting of one closure, without side effects (``lines``: see ``read``)."""
    closure, findings = read(raw, source, integration_id=integration_id, lines=lines)
    if closure is None:
        return Outcome(None, (), None, findings)
    return evaluate(closure, settings, previous)


def evaluate(closure: Closure, settings: ClientSettings,
             previous: PreviousClosure | None = None) -> Outcome:
    """Validate, map and build a parsed closure."""
    mapping = map_methods(closure, settings)
    findings = (*validate(closure, settings, previous), *mapping.findings)
    if error_category(findings) is not None:
        return Outcome(closure, mapping.matches, None, findings)
    entry = build(closure, settings, mapping)
    beyond = beyond_the_ledger(entry)
    if beyond:
        return Outcome(closure, mapping.matches, None, (*findings, *beyond))
    return Outcome(closure, mapping.matches, entry, findings)


@dataclass(frozen=True, slots=True)
class KnownPrevious:
    """The previous closure (``None``: there is none) of establishment ``establishment_id``
    before ``business_date``, as read for a closure expected to be that one's."""

    establishment_id: str
    business_date: date
    previous: PreviousClosure | None


@dataclass(frozen=True, slots=True)
class Assessment:
    """What the pure stages made of one closure, without the closure itself: a few small
    records, which a worker process hands back cheaply (``toporder_sync.core_processes``).

    ``read``: the closure was parsed and is the client's (else ``findings`` say why not).
    ``previous_needed``: it was, but it is not the closure ``known`` expected (another
    establishment or day): nothing was validated; assess it again knowing the previous closure
    of this ``(establishment_id, business_date)``. ``entry`` is built for a closure without
    errors, and only for one.
    """

    read: bool
    matches: tuple[MethodMatch, ...]
    entry: Entry | None
    findings: tuple[Finding, ...]
    previous_needed: tuple[str, date] | None = None

    @property
    def category(self) -> Category | None:
        return error_category(self.findings)


def assess(raw: bytes, source: str, settings: ClientSettings, *, integration_id: str,
           known: KnownPrevious | None, lines: LineCache | None = None) -> Assessment:
    """``process``, for a ledger that may have read the previous closure already (``known``)."""
    closure, findings = read(raw, source, integration_id=integration_id, lines=lines)
    if closure is None:
        return Assessment(False, (), None, findings)
    if (known is None or known.establishment_id != closure.establishment_id
            or known.business_date != closure.business_date):
        return Assessment(True, (), None, (), (closure.establishment_id, closure.business_date))
    outcome = evaluate(closure, settings, known.previous)
    return Assessment(True, outcome.matches, outcome.entry, outcome.findings)

"""The ledger side of ``clients import``: read the file's clients once, decide, write in bulk.

Promises:

* Nothing here commits: the caller's transaction (``db.session_scope``) holds the whole file,
  imported completely or not at all. ``ImportRefused`` names every problem, those of the file
  (``clients_csv``) and those only the ledger shows, before anything is written.
* The semantics of the single-client commands, applied to many. A new client is activated as
  ``clients.activate_client`` does (an unguessable integration identifier, active). A
  ``push`` client without a push secret gets one (``connections.issue_push_secret``). A
  webhook URL gets its signing secret the first time, and the client's pending notifications
  become due at once (``notifications.set_webhook``). Timezone, hours, source, name and URL of
  an existing client change as ``set-schedule``, ``set-source`` and ``set-webhook`` change them.
* A client with posted entries keeps its activation date and its territory: the first decides
  which days are posted at all, the second under which VAT rates, and the ledger's history is
  never rewritten behind a setting (a correction is a reversal plus a new entry, PCG art.
  420-5). A webhook URL is not removed either: no command does, and the client's
  notifications would wait, unsent, for a URL.
* Idempotent: a row equal to what the ledger holds changes nothing and issues nothing.
* Bulk: the clients of the file are read in a few statements (``_CHUNK`` identifiers each),
  the new ones inserted with one executemany, the changed ones updated with another (and one
  per kind of secret issued), rather than several statements per client; only a changed
  webhook URL costs a statement of its own, waking that client's notifications (figures in
  ``docs/onboarding.md``).
* On PostgreSQL the file's existing clients are locked FOR NO KEY UPDATE, as every writer of
  a client does (``clients.lock_client``), so a day cannot be posted between the check of
  posted entries and the change; a client activated by another command during the import
  fails it whole (``ConfigurationError``: import again). On SQLite BEGIN IMMEDIATE serializes.
* A secret leaves only in ``Issued``, once, for the command to hand to Toporder; no record
  here shows one in its repr, and ``RegisteredClient`` says whether a secret exists, not what.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Final, cast

from sqlalchemy import CursorResult, Table, bindparam, select, update
from sqlalchemy.orm import Session

from toporder_sync import signing
from toporder_sync.core.errors import ConfigurationError
from toporder_sync.core.model import Territory
from toporder_sync.ledger.clients import new_integration_id
from toporder_sync.ledger.db import insert_for
from toporder_sync.ledger.tables import Base, ClosureSourceKind
from toporder_sync.notifications import TOPIC
from toporder_sync.onboarding.clients_csv import ClientSpec, ParsedFile, Problem
from toporder_sync.outbox import wake

_CLIENTS: Table = Base.metadata.tables["clients"]
_ENTRIES: Table = Base.metadata.tables["entries"]
# Identifiers per IN list: well under SQLite's 32,766 bound parameters and PostgreSQL's 65,535.
_CHUNK: Final = 1000
# The settings a row states: fields of ``ClientSpec`` and columns of ``clients`` alike.
_SETTINGS: Final = ("name", "activated_on", "territory", "timezone", "run_hour",
                    "deadline_hour", "source", "webhook_url")


class ImportRefused(ConfigurationError):
    """A clients file refused whole: nothing was written. ``problems`` are sorted by line."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(sorted(problems, key=lambda p: p.line))
        super().__init__(f"clients file refused, nothing written: {len(self.problems)} "
                         f"problem(s), the first on line {self.problems[0].line}: "
                         f"{self.problems[0].column}: {self.problems[0].rule}")


@dataclass(frozen=True, slots=True)
class RegisteredClient:
    """A client as the registry holds it, safe to print: whether it has secrets, not them."""

    client_id: str
    name: str
    integration_id: str
    activated_on: date
    territory: Territory
    timezone: str
    run_hour: int
    deadline_hour: int
    active: bool
    source: ClosureSourceKind
    webhook_url: str | None
    has_push_secret: bool
    has_webhook_secret: bool


@dataclass(frozen=True, slots=True)
class Change:
    """What the import does to one client of the file: the columns it sets (for a new
    client, all of its settings) and the secrets it issues."""

    spec: ClientSpec
    values: Mapping[str, Any]
    issue_push_secret: bool
    issue_webhook_secret: bool


@dataclass(frozen=True, slots=True)
class Plan:
    """The import decided, before anything is written."""

    created: tuple[Change, ...]
    updated: tuple[Change, ...]
    unchanged: int
    problems: tuple[Problem, ...]


@dataclass(frozen=True, slots=True)
class Issued:
    """What to hand to Toporder for one client: its identifier and the secrets issued now
    (None: none issued by this import)."""

    client_id: str
    integration_id: str
    created: bool
    push_secret: str | None = field(repr=False)
    webhook_secret: str | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class ImportResult:
    created: int
    updated: int
    unchanged: int
    # In the order of the file: every new client, and every existing one given a secret.
    issued: tuple[Issued, ...]


_REGISTERED = select(
    *(_CLIENTS.c[name] for name in RegisteredClient.__dataclass_fields__
      if not name.startswith("has_")),
    _CLIENTS.c.push_secret.is_not(None).label("has_push_secret"),
    _CLIENTS.c.webhook_secret.is_not(None).label("has_webhook_secret"),
)
# FOR NO KEY UPDATE on PostgreSQL; SQLite has no row locks (nor the clause).
_REGISTERED_LOCKED = (_REGISTERED.where(_CLIENTS.c.client_id.in_(bindparam("ids", expanding=True)))
                      .with_for_update(key_share=True))
_WITH_ENTRIES = (select(_ENTRIES.c.client_id)
                 .where(_ENTRIES.c.client_id.in_(bindparam("ids", expanding=True)))
                 .distinct())


def list_clients(session: Session) -> list[RegisteredClient]:
    """Every client by identifier, with its source and webhook URL (never a secret)."""
    rows = session.execute(_REGISTERED.order_by(_CLIENTS.c.client_id))
    return [_registered(row) for row in rows]


def import_clients(session: Session, parsed: ParsedFile, *, now: datetime) -> ImportResult:
    """Create or update the file's clients, in the caller's transaction (module docstring).

    Raises ``ImportRefused`` with the problems of the file and of the ledger together, before
    anything is written.
    """
    specs = parsed.clients
    registered = read_registered(session, [spec.client_id for spec in specs])
    movers = [s.client_id for s in specs
              if s.client_id in registered and _moves_history(s, registered[s.client_id])]
    with_entries = frozenset(
        client_id for chunk in _chunks(movers)
        for client_id in session.scalars(_WITH_ENTRIES, {"ids": chunk})
    )
    decided = plan(specs, registered, with_entries)
    if parsed.problems or decided.problems:
        raise ImportRefused((*parsed.problems, *decided.problems))
    issued = [*_insert(session, decided.created, now=now),
              *_update(session, decided.updated, registered, now=now)]
    line = {spec.client_id: spec.line for spec in specs}
    return ImportResult(created=len(decided.created), updated=len(decided.updated),
                        unchanged=decided.unchanged,
                        issued=tuple(sorted(issued, key=lambda i: line[i.client_id])))


def read_registered(session: Session, client_ids: Sequence[str]) -> dict[str, RegisteredClient]:
    """Those of ``client_ids`` that exist, locked for this transaction on PostgreSQL."""
    return {
        row.client_id: _registered(row)
        for chunk in _chunks(client_ids)
        for row in session.execute(_REGISTERED_LOCKED, {"ids": chunk})
    }


def plan(specs: Sequence[ClientSpec], registered: Mapping[str, RegisteredClient],
         with_entries: frozenset[str]) -> Plan:
    """Decide each row against the ledger: pure, so that it is tested without a database.

    ``registered`` holds the file's clients that exist; ``with_entries`` those of them that
    have posted entries (at least those whose activation date or territory the file moves).
    """
    created: list[Change] = []
    updated: list[Change] = []
    problems: list[Problem] = []
    unchanged = 0
    for spec in specs:
        wanted = _columns(spec)
        client = registered.get(spec.client_id)
        if client is None:
            created.append(Change(spec, wanted, issue_push_secret=spec.source == "push",
                                  issue_webhook_secret=spec.webhook_url is not None))
            continue
        values = {column: value for column, value in wanted.items()
                  if getattr(client, column) != value}
        bad = _refusals(spec, client, values, has_entries=spec.client_id in with_entries)
        if bad:
            problems.extend(bad)
            continue
        change = Change(spec, values,
                        issue_push_secret=spec.source == "push" and not client.has_push_secret,
                        issue_webhook_secret=(spec.webhook_url is not None
                                              and not client.has_webhook_secret))
        if values or change.issue_push_secret or change.issue_webhook_secret:
            updated.append(change)
        else:
            unchanged += 1
    return Plan(tuple(created), tuple(updated), unchanged, tuple(problems))


def _refusals(spec: ClientSpec, client: RegisteredClient, values: Mapping[str, Any], *,
              has_entries: bool) -> list[Problem]:
    problems = []
    if has_entries and "activated_on" in values:
        problems.append(Problem(
            spec.line, "activation_date",
            f"{spec.client_id} has posted entries: its activation date stays "
            f"{client.activated_on.isoformat()} (moving it would put posted days before it or "
            "leave days unposted after them; a correction is a reversal, not a new date)"))
    if has_entries and "territory" in values:
        problems.append(Problem(
            spec.line, "territory",
            f"{spec.client_id} has posted entries under the VAT rates of "
            f"{client.territory.value}: its territory stays {client.territory.value}"))
    if "webhook_url" in values and spec.webhook_url is None:
        problems.append(Problem(
            spec.line, "webhook_url",
            f"{spec.client_id} sends its notifications to a webhook URL: an import does not "
            "remove it (they would wait unsent); give its URL"))
    return problems


def _moves_history(spec: ClientSpec, client: RegisteredClient) -> bool:
    return spec.activated_on != client.activated_on or spec.territory != client.territory


def _insert(session: Session, changes: Sequence[Change], *, now: datetime) -> list[Issued]:
    if not changes:
        return []
    rows = [{
        **change.values,
        "client_id": change.spec.client_id,
        "integration_id": new_integration_id(),
        "active": True,
        "account_overrides": {},
        "created_at": now,
        "push_secret": signing.new_secret() if change.issue_push_secret else None,
        "webhook_secret": signing.new_secret() if change.issue_webhook_secret else None,
    } for change in changes]
    # Without RETURNING, a plain executemany, which psycopg pipelines: with RETURNING,
    # SQLAlchemy sends multi-row VALUES whose parsing by psycopg took most of an import on
    # PostgreSQL (measured: docs/onboarding.md).
    # ON CONFLICT: a client activated by another command since the read is not overwritten,
    # and the import fails whole.
    insert = (insert_for(session, _CLIENTS).on_conflict_do_nothing(index_elements=["client_id"])
              .execution_options(preserve_rowcount=True))  # else -1 for an INSERT on psycopg
    inserted = cast("CursorResult[Any]", session.execute(insert, rows)).rowcount
    if inserted != len(rows):
        raise ConfigurationError(
            f"{len(rows) - inserted} of the file's new clients were activated by another "
            "command during the import: nothing was written, import the file again")
    return [Issued(row["client_id"], row["integration_id"], True, row["push_secret"],
                   row["webhook_secret"]) for row in rows]


# One statement each, run once per import with every row (an executemany): the settings of
# the changed clients (all of them, so that every row binds the same parameters), and each
# kind of secret issued.
_UPDATE_SETTINGS = (update(_CLIENTS).where(_CLIENTS.c.client_id == bindparam("key"))
                    .values({column: bindparam(f"new_{column}") for column in _SETTINGS}))
_SET_PUSH_SECRET = (update(_CLIENTS).where(_CLIENTS.c.client_id == bindparam("key"))
                    .values(push_secret=bindparam("secret")))
_SET_WEBHOOK_SECRET = (update(_CLIENTS).where(_CLIENTS.c.client_id == bindparam("key"))
                       .values(webhook_secret=bindparam("secret")))


def _update(session: Session, changes: Sequence[Change],
            registered: Mapping[str, RegisteredClient], *, now: datetime) -> list[Issued]:
    settings = [{"key": change.spec.client_id,
                 **{f"new_{column}": value for column, value in _columns(change.spec).items()}}
                for change in changes if change.values]
    push = {c.spec.client_id: signing.new_secret() for c in changes if c.issue_push_secret}
    hook = {c.spec.client_id: signing.new_secret() for c in changes if c.issue_webhook_secret}
    for statement, rows in ((_UPDATE_SETTINGS, settings),
                            (_SET_PUSH_SECRET, [{"key": k, "secret": v} for k, v in push.items()]),
                            (_SET_WEBHOOK_SECRET,
                             [{"key": k, "secret": v} for k, v in hook.items()])):
        if rows:
            session.execute(statement, rows)
    for change in changes:
        if "webhook_url" in change.values:
            wake(session, change.spec.client_id, topic=TOPIC, now=now)
    return [Issued(client_id, registered[client_id].integration_id, False, push.get(client_id),
                   hook.get(client_id))
            for client_id in (c.spec.client_id for c in changes)
            if client_id in push or client_id in hook]


def _columns(spec: ClientSpec) -> dict[str, Any]:
    """The row's settings as the client's columns hold them."""
    values = {column: getattr(spec, column) for column in _SETTINGS}
    return {**values, "territory": spec.territory.value}


def _registered(row: Any) -> RegisteredClient:
    return RegisteredClient(
        client_id=row.client_id, name=row.name, integration_id=row.integration_id,
        activated_on=row.activated_on, territory=Territory(row.territory),
        timezone=row.timezone, run_hour=row.run_hour, deadline_hour=row.deadline_hour,
        active=bool(row.active), source=row.source, webhook_url=row.webhook_url,
        has_push_secret=bool(row.has_push_secret),
        has_webhook_secret=bool(row.has_webhook_secret),
    )


def _chunks(ids: Sequence[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), _CHUNK):
        yield list(ids[start:start + _CHUNK])

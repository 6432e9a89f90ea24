"""Pennylane ids of a company's sales journal and ledger accounts, cached in the ledger.

Our entries name a journal by code (``VT``) and accounts by PCG number (``706100``); Pennylane
wants their ids. The resolver keeps them in the ledger's ``pennylane_ids`` table, per company
(the fingerprint of its API token), so that every process and every client of the company
share one lookup: a new process resolves an entry without a request. An id is asked again once
it is older than the lifetime (``ID_LIFETIME``), and at once after Pennylane refused one
(``forget``: it may have been deleted or changed). Each call runs its own short transactions and
none is open while Pennylane is asked, so the resolver is safe across threads and processes; two
of them storing the same id at once both succeed (an upsert, the newest lookup kept). What is
missing in Pennylane is a ``PennylaneRejected`` of category LEDGER naming the journal or the
account: to create (or enable) in Pennylane, or to change here.

Several accounts with one number (Pennylane allows it): the rule is an ENABLED account first,
then the lowest id, i.e. the oldest, the one the company's chart was set up with; the choice is
deterministic, so an entry pushed twice would use the same ids. A number whose accounts are all
disabled is refused rather than posted to a disabled account.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Protocol

from sqlalchemy import Engine, Executable, delete, select

from toporder_sync.core.errors import ledger_error
from toporder_sync.ledger.db import dialect_insert, for_dialect, transaction
from toporder_sync.ledger.tables import PennylaneIdKind, PennylaneIdRow
from toporder_sync.pennylane.client import Journal, LedgerAccount, PennylaneRejected

# An id changes only when someone deletes or recreates the journal or account in Pennylane, and
# a refusal drops the company's ids at once (``forget``). The lifetime bounds what no refusal
# reveals: an older account enabled again, or a new journal with the code, which the rule would
# now choose. A day lets such a change reach the next day's entries, for one lookup per company
# and day (about 15 requests, well within Pennylane's 25 per 5 s).
ID_LIFETIME = timedelta(days=1)


class Directory(Protocol):
    """What the resolver needs of the API (``PennylaneClient`` is one)."""

    def journals(self) -> list[Journal]: ...

    def ledger_accounts(self, number: str) -> list[LedgerAccount]: ...


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Resolver:
    """Pennylane's ids by company (its token's fingerprint), cached in the ledger of ``engine``."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = _utc_now,
                 lifetime: timedelta = ID_LIFETIME) -> None:
        if lifetime <= timedelta(0):
            raise ValueError(f"an id lifetime must be positive, not {lifetime}")
        self._engine = engine
        self._clock = clock
        self._lifetime = lifetime

    def journal_id(self, api: Directory, company: str, code: str) -> int:
        # Read before asking: fetched_at is then no later than Pennylane's answer.
        now = self._clock()
        cached = self._cached(company, "journal", [code], now)
        if code in cached:
            return cached[code]
        found = sorted(j.id for j in api.journals() if j.code == code)
        if not found:
            raise PennylaneRejected(ledger_error(
                "pennylane_journal", "journal",
                f"journal {code} does not exist in the Pennylane company: create a journal "
                f"with code {code} in Pennylane, or configure this client's journal code with "
                "`toporder-sync pennylane configure CLIENT --journal CODE`"))
        self._store(company, "journal", {code: found[0]}, now)
        return found[0]

    def account_ids(self, api: Directory, company: str,
                    numbers: Iterable[str]) -> Mapping[str, int]:
        """The id of every account number; every missing one is named in one error."""
        wanted = list(dict.fromkeys(numbers))
        if not wanted:
            return MappingProxyType({})
        now = self._clock()
        cached = self._cached(company, "account", wanted, now)
        fetched: dict[str, int] = {}
        problems: list[str] = []
        for number in wanted:
            if number in cached:
                continue
            chosen = _choose(number, api.ledger_accounts(number))
            if isinstance(chosen, str):
                problems.append(chosen)
            else:
                fetched[number] = chosen
        # Stored even when another number is refused: once it is fixed, only it is asked.
        if fetched:
            self._store(company, "account", fetched, now)
        if problems:
            raise PennylaneRejected(ledger_error(
                "pennylane_account", "account",
                "; ".join(problems) + ": create or enable the account in the Pennylane "
                "company's chart of accounts, or map the lines to an account that exists there"))
        found = {**cached, **fetched}
        return MappingProxyType({number: found[number] for number in wanted})

    def forget(self, company: str) -> None:
        """Drop a company's ids (Pennylane refused one: it may have been deleted or changed)."""
        # Not durable: a forgetting undone by a crash leaves an id that is refused again.
        with transaction(self._engine, durable=False) as db:
            db.execute(delete(PennylaneIdRow).where(PennylaneIdRow.company == company))

    def _cached(self, company: str, kind: PennylaneIdKind, codes: list[str],
                now: datetime) -> dict[str, int]:
        """The ids of ``codes`` fetched within the lifetime, by code."""
        with transaction(self._engine) as db:
            rows = db.execute(
                select(PennylaneIdRow.code, PennylaneIdRow.remote_id).where(
                    PennylaneIdRow.company == company,
                    PennylaneIdRow.kind == kind,
                    PennylaneIdRow.code.in_(codes),
                    PennylaneIdRow.fetched_at >= now - self._lifetime,
                )
            ).all()
        return {code: remote_id for code, remote_id in rows}

    def _store(self, company: str, kind: PennylaneIdKind, ids: Mapping[str, int],
               now: datetime) -> None:
        # Not durable: an id lost in a crash is only asked again.
        with transaction(self._engine, durable=False) as db:
            db.execute(for_dialect(db, _upsert_statement), [
                {"company": company, "kind": kind, "code": code, "remote_id": remote_id,
                 "fetched_at": now}
                for code, remote_id in ids.items()
            ])


@functools.cache
def _upsert_statement(dialect: str) -> Executable:
    # Two processes resolving at once both store: the newest lookup is kept, so that a slow
    # process does not put back an id another one has just refreshed (after a forget).
    insert = dialect_insert(dialect, PennylaneIdRow)
    return insert.on_conflict_do_update(
        index_elements=["company", "kind", "code"],
        set_={"remote_id": insert.excluded.remote_id,
              "fetched_at": insert.excluded.fetched_at},
        where=PennylaneIdRow.fetched_at <= insert.excluded.fetched_at,
    )


def _choose(number: str, accounts: list[LedgerAccount]) -> int | str:
    """The id to use for ``number``, or what is wrong with it."""
    exact = [a for a in accounts if a.number == number]
    if not exact:
        return f"account {number} does not exist in the Pennylane company"
    enabled = sorted(a.id for a in exact if a.enabled)
    if not enabled:
        return f"account {number} is disabled in the Pennylane company"
    return enabled[0]

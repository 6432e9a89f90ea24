"""Pennylane's journal and account ids, cached in the ledger per company with a lifetime.

A real ledger (SQLite; the round trip and concurrent stores also on PostgreSQL) and the fake
Pennylane on 127.0.0.1, whose request log counts what the resolver asks. A new ``Resolver`` on
the same ledger is what a new process has.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import NOW, Clock, migrated_ledger
from pennylane_fake import TOKEN, FakePennylane, sales_company
from sqlalchemy import Engine, QueuePool, select

from toporder_sync.core.errors import Category, Finding
from toporder_sync.ledger.db import make_engine, session_scope
from toporder_sync.ledger.tables import PennylaneIdRow
from toporder_sync.pennylane.client import (
    Journal,
    LedgerAccount,
    PennylaneClient,
    PennylaneRejected,
    token_fingerprint,
    token_limiter,
)
from toporder_sync.pennylane.resolver import ID_LIFETIME, Directory, Resolver

COMPANY = token_fingerprint(TOKEN)
ACCOUNTS = ("706100", "445712", "530000")

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated ledger: SQLite, unless a test asks for ``postgresql`` (indirect)."""
    with migrated_ledger(request, tmp_path) as engine:
        yield engine


@pytest.fixture
def fake() -> Iterator[FakePennylane]:
    """A Pennylane company with the sales journal VT and a few accounts."""
    with sales_company(ACCOUNTS) as pennylane:
        yield pennylane


@pytest.fixture
def api(fake: FakePennylane, engine: Engine) -> Iterator[Directory]:
    with _api(fake) as client:
        yield NoTransactionOpen(client, engine)


def _api(fake: FakePennylane) -> PennylaneClient:
    """A client of the fake with a limiter of its own (the process-wide one is per token)."""
    return PennylaneClient(TOKEN, url=fake.url, limiter=token_limiter())


class NoTransactionOpen:
    """The client, checking that the resolver holds no connection (so no transaction) on the
    ledger while it waits for Pennylane."""

    def __init__(self, client: PennylaneClient, engine: Engine) -> None:
        self.client = client
        self.engine = engine

    def _check(self) -> None:
        pool = self.engine.pool
        assert isinstance(pool, QueuePool)
        assert pool.checkedout() == 0

    def journals(self) -> list[Journal]:
        self._check()
        return self.client.journals()

    def ledger_accounts(self, number: str) -> list[LedgerAccount]:
        self._check()
        return self.client.ledger_accounts(number)


def _journal_id(fake: FakePennylane, code: str) -> int:
    return next(int(j["id"]) for j in fake.journals if j["code"] == code)


def _account_id(fake: FakePennylane, number: str) -> int:
    return next(int(a["id"]) for a in fake.accounts if a["number"] == number)


def _replace_in_pennylane(fake: FakePennylane) -> tuple[int, int]:
    """Journal VT and account 706100 deleted and created again: new ids."""
    fake.journals = [j for j in fake.journals if j["code"] != "VT"]
    fake.accounts = [a for a in fake.accounts if a["number"] != "706100"]
    return fake.add_journal("VT"), fake.add_account("706100")


def _rows(engine: Engine) -> set[tuple[str, str, str, int]]:
    with session_scope(engine) as session:
        return {(r.company, r.kind, r.code, r.remote_id)
                for r in session.scalars(select(PennylaneIdRow))}


# --- the cache in the ledger ----------------------------------------------------------------


@pytest.mark.parametrize("engine", BACKENDS, indirect=True)
def test_a_new_process_resolves_the_journal_and_the_accounts_without_a_request(
    engine: Engine, fake: FakePennylane, api: Directory, clock: Clock,
) -> None:
    first = Resolver(engine, clock=clock)
    vt = first.journal_id(api, COMPANY, "VT")
    ids = first.account_ids(api, COMPANY, ["706100", "445712", "706100"])
    assert vt == _journal_id(fake, "VT")
    assert dict(ids) == {"706100": _account_id(fake, "706100"),
                         "445712": _account_id(fake, "445712")}
    assert list(ids) == ["706100", "445712"]  # in the order asked, each once
    asked = len(fake.log)
    assert asked == 3  # the journals, then each account once

    with session_scope(engine) as session:
        stored = session.scalars(select(PennylaneIdRow)).all()
        assert {r.fetched_at for r in stored} == {NOW}
    assert _rows(engine) == {(COMPANY, "journal", "VT", vt),
                             (COMPANY, "account", "706100", ids["706100"]),
                             (COMPANY, "account", "445712", ids["445712"])}

    new_process = Resolver(engine, clock=clock)
    assert new_process.journal_id(api, COMPANY, "VT") == vt
    assert new_process.account_ids(api, COMPANY, ["445712", "706100"]) == ids
    assert len(fake.log) == asked

    # Only the number not yet known is asked; another company (token) asks for its own.
    new_process.account_ids(api, COMPANY, ["706100", "530000"])
    assert len(fake.log) == asked + 1
    assert new_process.journal_id(api, "another-company", "VT") == vt
    assert len(fake.log) == asked + 2


def test_ids_older_than_the_lifetime_are_asked_again_and_refreshed(
    engine: Engine, fake: FakePennylane, api: Directory, clock: Clock,
) -> None:
    resolver = Resolver(engine, clock=clock)
    old_vt = resolver.journal_id(api, COMPANY, "VT")
    old_account = resolver.account_ids(api, COMPANY, ["706100"])["706100"]
    new_vt, new_account = _replace_in_pennylane(fake)
    asked = len(fake.log)

    clock.advance(ID_LIFETIME)  # exactly the lifetime: still fresh
    assert resolver.journal_id(api, COMPANY, "VT") == old_vt
    assert resolver.account_ids(api, COMPANY, ["706100"]) == {"706100": old_account}
    assert len(fake.log) == asked

    clock.advance(timedelta(seconds=1))
    assert resolver.journal_id(api, COMPANY, "VT") == new_vt
    assert resolver.account_ids(api, COMPANY, ["706100"]) == {"706100": new_account}
    assert len(fake.log) == asked + 2
    with session_scope(engine) as session:
        assert set(session.scalars(select(PennylaneIdRow.fetched_at))) == {clock.now}

    assert Resolver(engine, clock=clock).journal_id(api, COMPANY, "VT") == new_vt
    assert len(fake.log) == asked + 2


def test_a_shorter_lifetime_is_honoured(
    engine: Engine, fake: FakePennylane, api: Directory, clock: Clock,
) -> None:
    resolver = Resolver(engine, clock=clock, lifetime=timedelta(minutes=5))
    resolver.journal_id(api, COMPANY, "VT")
    clock.advance(timedelta(minutes=5, seconds=1))
    resolver.journal_id(api, COMPANY, "VT")
    assert len(fake.log) == 2
    with pytest.raises(ValueError, match="lifetime must be positive"):
        Resolver(engine, lifetime=timedelta(0))


def test_forget_makes_the_next_call_ask_again_and_picks_up_a_changed_id(
    engine: Engine, fake: FakePennylane, api: Directory, clock: Clock,
) -> None:
    resolver = Resolver(engine, clock=clock)
    old_vt = resolver.journal_id(api, COMPANY, "VT")
    old_ids = resolver.account_ids(api, COMPANY, ["706100", "445712"])
    resolver.journal_id(api, "another-company", "VT")
    new_vt, new_account = _replace_in_pennylane(fake)
    asked = len(fake.log)

    # Until Pennylane refuses one, the cached ids are used.
    assert resolver.journal_id(api, COMPANY, "VT") == old_vt
    assert resolver.account_ids(api, COMPANY, ["706100"])["706100"] == old_ids["706100"]
    assert len(fake.log) == asked

    # Another process (another Resolver) forgets: this one asks again too, the ledger is shared.
    Resolver(engine, clock=clock).forget(COMPANY)
    assert _rows(engine) == {("another-company", "journal", "VT", old_vt)}
    assert resolver.journal_id(api, COMPANY, "VT") == new_vt
    assert resolver.account_ids(api, COMPANY, ["706100", "445712"]) == {
        "706100": new_account, "445712": old_ids["445712"]}
    assert len(fake.log) == asked + 3
    assert _rows(engine) == {
        ("another-company", "journal", "VT", old_vt),
        (COMPANY, "journal", "VT", new_vt),
        (COMPANY, "account", "706100", new_account),
        (COMPANY, "account", "445712", old_ids["445712"]),
    }


# --- two processes at once ------------------------------------------------------------------


class Gate:
    """Pennylane answering only once both resolvers have asked, so both found the ids missing
    in the ledger and both store them."""

    def __init__(self, client: PennylaneClient, barrier: threading.Barrier) -> None:
        self.client = client
        self.barrier = barrier

    def journals(self) -> list[Journal]:
        self.barrier.wait()
        return self.client.journals()

    def ledger_accounts(self, number: str) -> list[LedgerAccount]:
        self.barrier.wait()
        return self.client.ledger_accounts(number)


@pytest.mark.parametrize("engine", BACKENDS, indirect=True)
def test_two_processes_storing_the_same_ids_at_once_both_succeed(
    engine: Engine, fake: FakePennylane, clock: Clock,
) -> None:
    barrier = threading.Barrier(2, timeout=10)
    results: list[tuple[int, dict[str, int]]] = []
    failures: list[BaseException] = []

    def process() -> None:
        # An engine of its own: what another process has.
        own = make_engine(engine.url.render_as_string(hide_password=False))
        try:
            with _api(fake) as client:
                resolver, gate = Resolver(own, clock=clock), Gate(client, barrier)
                results.append((resolver.journal_id(gate, COMPANY, "VT"),
                                dict(resolver.account_ids(gate, COMPANY, ["706100"]))))
        except BaseException as exc:  # reported by the assertion below
            failures.append(exc)
        finally:
            own.dispose()

    threads = [threading.Thread(target=process) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert failures == []
    expected = (_journal_id(fake, "VT"), {"706100": _account_id(fake, "706100")})
    assert results == [expected, expected]
    assert len(fake.log) == 4  # each asked both: neither found the other's ids
    assert _rows(engine) == {(COMPANY, "journal", "VT", expected[0]),
                             (COMPANY, "account", "706100", expected[1]["706100"])}


def test_a_slow_lookup_does_not_overwrite_a_newer_one(
    engine: Engine, fake: FakePennylane, clock: Clock,
) -> None:
    old_vt = _journal_id(fake, "VT")

    class Slow:
        """Pennylane answers the old list; meanwhile VT is recreated and another process,
        a minute later, resolves and stores the new id."""

        def __init__(self, client: PennylaneClient) -> None:
            self.client = client

        def journals(self) -> list[Journal]:
            answer = self.client.journals()
            new_vt, _ = _replace_in_pennylane(fake)
            later = Clock(NOW + timedelta(minutes=1))
            with _api(fake) as other:
                assert Resolver(engine, clock=later).journal_id(other, COMPANY, "VT") == new_vt
            return answer

        def ledger_accounts(self, number: str) -> list[LedgerAccount]:
            return self.client.ledger_accounts(number)

    with _api(fake) as client:
        assert Resolver(engine, clock=clock).journal_id(Slow(client), COMPANY, "VT") == old_vt
    assert _rows(engine) == {(COMPANY, "journal", "VT", _journal_id(fake, "VT"))}


# --- the rules and their messages -----------------------------------------------------------


def test_several_accounts_with_one_number_the_enabled_one_with_the_lowest_id_is_used(
    engine: Engine, fake: FakePennylane, api: Directory, clock: Clock,
) -> None:
    disabled = fake.add_account("706300", enabled=False)
    oldest = fake.add_account("706300")
    fake.add_account("706300")
    fake.add_account("7063001")  # a longer number with the same prefix is another account
    resolver = Resolver(engine, clock=clock)
    ids = resolver.account_ids(api, COMPANY, ["706300", "706100"])
    assert ids["706300"] == oldest != disabled
    requests = len(fake.log)
    assert resolver.account_ids(api, COMPANY, ["706300"]) == {"706300": oldest}
    assert len(fake.log) == requests  # cached

    fake.accounts = [a for a in fake.accounts if a["number"] != "706300" or not a["enabled"]]
    resolver.forget(COMPANY)
    with pytest.raises(PennylaneRejected,
                       match="account 706300 is disabled in the Pennylane company"):
        resolver.account_ids(api, COMPANY, ["706300"])


def test_resolver_rule_is_deterministic_whatever_the_order_pennylane_lists(
    engine: Engine, clock: Clock,
) -> None:
    class Listing:
        def __init__(self, accounts: list[LedgerAccount]) -> None:
            self.accounts = accounts

        def journals(self) -> list[Journal]:
            return []

        def ledger_accounts(self, number: str) -> list[LedgerAccount]:
            return self.accounts

    accounts = [LedgerAccount(9, "706100", "", True), LedgerAccount(3, "706100", "", True),
                LedgerAccount(1, "706100", "", False)]
    for company, listing in (("c", accounts), ("d", accounts[::-1])):
        ids = Resolver(engine, clock=clock).account_ids(Listing(listing), company, ["706100"])
        assert ids == {"706100": 3}


def test_a_missing_journal_is_a_ledger_error_naming_it(
    engine: Engine, fake: FakePennylane, api: Directory, clock: Clock,
) -> None:
    with pytest.raises(PennylaneRejected) as caught:
        Resolver(engine, clock=clock).journal_id(api, COMPANY, "VE")
    assert caught.value.finding == Finding(
        Category.LEDGER, "pennylane_journal", "journal",
        "journal VE does not exist in the Pennylane company: create a journal with code VE in "
        "Pennylane, or configure this client's journal code with "
        "`toporder-sync pennylane configure CLIENT --journal CODE`")
    assert _rows(engine) == set()

    fake.add_journal("VE")
    Resolver(engine, clock=clock).journal_id(api, COMPANY, "VE")  # found once created


def test_every_missing_or_disabled_account_is_named_in_one_error(
    engine: Engine, fake: FakePennylane, api: Directory, clock: Clock,
) -> None:
    fake.add_account("706300", enabled=False)
    resolver = Resolver(engine, clock=clock)
    with pytest.raises(PennylaneRejected) as caught:
        resolver.account_ids(api, COMPANY, ["706100", "706200", "706300"])
    assert caught.value.finding == Finding(
        Category.LEDGER, "pennylane_account", "account",
        "account 706200 does not exist in the Pennylane company; "
        "account 706300 is disabled in the Pennylane company: create or enable the account in "
        "the Pennylane company's chart of accounts, or map the lines to an account that exists "
        "there")
    # The account found is kept: once the others are fixed, only they are asked.
    assert _rows(engine) == {(COMPANY, "account", "706100", _account_id(fake, "706100"))}
    fake.add_account("706200")
    fake.add_account("706300")
    asked = len(fake.log)
    resolver.account_ids(api, COMPANY, ["706100", "706200", "706300"])
    assert len(fake.log) == asked + 2

"""Pushing entries to Pennylane, against a fake Pennylane API v2 on 127.0.0.1.

Every posted entry and reversal lands once, with its amounts and account ids; what is missing
on the Pennylane side is a LEDGER error naming it; 429s are honoured; an uncertain failure or a
crash after Pennylane created the entry never makes a second one; the token stays out of logs
and command output. SQLite throughout; the round trip also runs on PostgreSQL.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from conftest import BUSINESS_DAY, CLIENT_ID, CORRECTED, NOW, Clock
from pennylane_fake import FakePennylane, Fault
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from toporder_sync import outbox, service
from toporder_sync.cli import main
from toporder_sync.core.errors import ConfigurationError
from toporder_sync.core.model import Entry
from toporder_sync.core.money import MoneyTypeError
from toporder_sync.ledger.db import make_engine, session_scope, upgrade
from toporder_sync.ledger.inbox import StoreResult
from toporder_sync.ledger.journal import PostResult
from toporder_sync.ledger.tables import OutboxRow, PennylanePushRow
from toporder_sync.outbox import DeliveryFailed, Message
from toporder_sync.pennylane import TOPIC
from toporder_sync.pennylane import store as push_store
from toporder_sync.pennylane.client import (
    RATE_MARGIN,
    EntryLinePayload,
    EntryPayload,
    LedgerAccount,
    PennylaneClient,
    PennylaneRejected,
    amount_text,
    token_limiter,
)
from toporder_sync.pennylane.resolver import Resolver
from toporder_sync.pennylane.sink import PennylaneHandler
from toporder_sync.pennylane.tokens import TokenRef, load_token
from toporder_sync.rate_limit import RateLimiter

TOKEN = "plk-good-token"  # noqa: S105 (the fake's token)
TOKEN_ENV = "PENNYLANE_TOKEN_PETIT_ZINC"  # noqa: S105 (a variable name)
ACCOUNTS = ("511500", "511800", "530000", "658000", "706100", "706200", "445712", "445711",
            "419100", "467500")




# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated ledger: SQLite, unless a test asks for ``postgresql`` (indirect)."""
    backend = getattr(request, "param", "sqlite")
    admin: Engine | None = None
    name = f"ledger_{uuid.uuid4().hex}"
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        server: str = request.getfixturevalue("postgres_server")
        admin = request.getfixturevalue("postgres_admin")
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = f"{server}/{name}"
    engine = make_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()
    if admin is not None:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def fake() -> Iterator[FakePennylane]:
    """A Pennylane company with the sales journal VT and every account of the worked example."""
    with FakePennylane(tokens=frozenset({TOKEN}), hang=1.0) as pennylane:
        pennylane.add_journal("HA", "Journal des achats")
        pennylane.add_journal("VT")
        for number in ACCOUNTS:
            pennylane.add_account(number)
        yield pennylane


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def handler(engine: Engine, fake: FakePennylane, clock: Clock) -> Iterator[PennylaneHandler]:
    handler = _handler(engine, fake, clock)
    yield handler
    handler.close()


def _handler(engine: Engine, fake: FakePennylane, clock: Clock, *,
             environ: dict[str, str] | None = None) -> PennylaneHandler:
    # A fresh resolver and limiter: what a new process would have.
    return PennylaneHandler(
        engine, resolver=Resolver(),
        client_factory=lambda token: PennylaneClient(
            token, url=fake.url, timeout=httpx.Timeout(0.5), limiter=token_limiter()),
        environ={TOKEN_ENV: TOKEN} if environ is None else environ, clock=clock)


@pytest.fixture
def configured(engine: Engine, client_id: str) -> str:
    """``petit-zinc`` set up for Pennylane, its token in ``TOKEN_ENV``."""
    with session_scope(engine) as session:
        push_store.configure(session, client_id, token=TokenRef("env", TOKEN_ENV), now=NOW)
    return client_id


@pytest.fixture
def post(engine: Engine, client_id: str, store: Callable[..., StoreResult],
         make_entry: Callable[..., Entry]) -> Callable[..., PostResult]:
    """Post closure Z<number> of the business day through ``service.post``."""

    def post(number: int = 412, lines: tuple[tuple[str, str, str, str], ...] | None = None,
             ) -> PostResult:
        stored = store(f'{{"closure": {number}}}'.encode(), number=number)
        entry = (make_entry(number=number) if lines is None
                 else make_entry(number=number, lines=lines))
        return service.post(engine, client_id, BUSINESS_DAY, closure_id=stored.closure_id,
                            entry=entry, matches=[], warnings=[], now=NOW)

    return post


def _api(fake: FakePennylane) -> PennylaneClient:
    """A client of the fake with a limiter of its own (the process-wide one is per token)."""
    return PennylaneClient(TOKEN, url=fake.url, limiter=token_limiter())


def _relay(engine: Engine, handler: PennylaneHandler, clock: Clock) -> outbox.RelayReport:
    return outbox.relay(engine, {TOPIC: handler}, now=clock)


def _pushes(engine: Engine) -> list[PennylanePushRow]:
    with session_scope(engine) as session:
        rows = list(session.scalars(select(PennylanePushRow).order_by(PennylanePushRow.entry_id)))
        session.expunge_all()
        return rows


def _messages(engine: Engine) -> list[OutboxRow]:
    with session_scope(engine) as session:
        rows = list(session.scalars(select(OutboxRow).where(OutboxRow.topic == TOPIC)
                                    .order_by(OutboxRow.id)))
        session.expunge_all()
        return rows


def _message(engine: Engine, entry_id: int) -> Message:
    with session_scope(engine) as session:
        (found,) = [m.message for m in outbox.list_messages(session)
                    if m.message.payload == {"entry_id": entry_id}]
    return found


def _lines(fake: FakePennylane, entry: dict[str, object]) -> list[tuple[str, str, str]]:
    numbers = {a["id"]: a["number"] for a in fake.accounts}
    return [(numbers[line["ledger_account_id"]], line["debit"], line["credit"])
            for line in entry["ledger_entry_lines"]]  # type: ignore[attr-defined]


# --- the round trip -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "engine", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_an_entry_and_its_reversal_land_once_each_with_their_amounts_and_accounts(
    engine: Engine, configured: str, post: Callable[..., PostResult], fake: FakePennylane,
    handler: PennylaneHandler, clock: Clock, make_entry: Callable[..., Entry],
) -> None:
    first = post(412)
    replaced = post(413, CORRECTED)
    assert replaced.status == "replaced" and replaced.reversal_id is not None
    # Queued in the posting's own transaction: the original, its reversal, the new entry.
    assert [m.payload["entry_id"] for m in _messages(engine)] == [
        first.entry_id, replaced.reversal_id, replaced.entry_id]

    report = _relay(engine, handler, clock)

    assert (report.sent, report.retried, report.dead) == (3, 0, 0)
    vt = next(j["id"] for j in fake.journals if j["code"] == "VT")
    assert [(e["journal_id"], e["date"], e["piece_number"]) for e in fake.entries] == [
        (vt, "2026-11-27", "Z412-VT1"), (vt, "2026-11-27", "Z412-VT2"),
        (vt, "2026-11-27", "Z413-VT3")]
    original, reversal, new = fake.entries
    worked = make_entry(number=412)
    assert _lines(fake, original) == [(line.account, f"{line.debit:f}", f"{line.credit:f}")
                                      for line in worked.lines]
    assert _lines(fake, reversal) == [(line.account, f"{line.credit:f}", f"{line.debit:f}")
                                      for line in worked.lines]
    assert _lines(fake, new) == [(a, d, c) for a, _, d, c in CORRECTED]
    assert original["label"] == worked.label
    assert reversal["label"].startswith("Extourne de l'écriture n°1")
    assert original["ledger_entry_lines"][0]["label"] == "Z412 - Cartes bancaires à encaisser"
    assert original["currency"] == "EUR"
    assert [(p.status, p.remote_id, p.pushed_at) for p in _pushes(engine)] == [
        ("pushed", str(e["id"]), NOW) for e in fake.entries]
    assert {m.status for m in _messages(engine)} == {"sent"}

    # Nothing left to push; a new relay, or queueing them again, sends nothing more.
    with session_scope(engine) as session:
        assert push_store.enqueue_entries(session, configured, [first.entry_id], now=NOW) == []
    assert _relay(engine, handler, clock).claimed == 0
    assert len(fake.posts()) == 3


def test_a_client_not_set_up_for_pennylane_queues_nothing(
    engine: Engine, client_id: str, post: Callable[..., PostResult],
) -> None:
    post(412)
    assert _messages(engine) == []
    assert _pushes(engine) == []


def test_an_unchanged_rerun_queues_nothing_more(
    engine: Engine, configured: str, post: Callable[..., PostResult],
) -> None:
    post(412)
    assert post(412).status == "unchanged"
    assert len(_messages(engine)) == 1


def test_a_reversal_waits_until_the_entry_it_reverses_is_in_pennylane(
    engine: Engine, configured: str, post: Callable[..., PostResult],
    handler: PennylaneHandler, fake: FakePennylane,
) -> None:
    post(412)
    replaced = post(413, CORRECTED)
    assert replaced.reversal_id is not None

    with pytest.raises(DeliveryFailed, match="waits for the entry it reverses"):
        handler.deliver(_message(engine, replaced.reversal_id))
    assert fake.posts() == []


def test_a_reversal_of_an_entry_posted_before_set_up_brings_that_entry_along(
    engine: Engine, client_id: str, post: Callable[..., PostResult], fake: FakePennylane,
    handler: PennylaneHandler, clock: Clock,
) -> None:
    first = post(412)  # not set up yet: not queued
    with session_scope(engine) as session:
        push_store.configure(session, client_id, token=TokenRef("env", TOKEN_ENV), now=NOW)
    replaced = post(413, CORRECTED)

    assert _relay(engine, handler, clock).sent == 3
    assert [p.entry_id for p in _pushes(engine)] == [
        first.entry_id, replaced.reversal_id, replaced.entry_id]
    assert [e["piece_number"] for e in fake.entries] == ["Z412-VT1", "Z412-VT2", "Z413-VT3"]


# --- what must be fixed on the Pennylane side -----------------------------------------------


def test_an_account_missing_in_pennylane_is_a_ledger_error_naming_it(
    engine: Engine, configured: str, post: Callable[..., PostResult], fake: FakePennylane,
    handler: PennylaneHandler, clock: Clock,
) -> None:
    fake.accounts = [a for a in fake.accounts if a["number"] not in ("658000", "467500")]
    post(412)

    report = _relay(engine, handler, clock)

    assert report.dead == 1  # at once: retrying cannot create an account
    (message,) = _messages(engine)
    assert message.last_error is not None
    assert "account 658000 does not exist in the Pennylane company" in message.last_error
    assert "account 467500 does not exist" in message.last_error
    assert "[ledger: fix on the Pennylane side" in message.last_error
    assert fake.posts() == []
    with session_scope(engine) as session:
        (status,) = push_store.push_statuses(session, configured)
    assert (status.state, status.remote_id) == ("dead", None)
    assert status.last_error == message.last_error


def test_a_journal_missing_in_pennylane_is_a_ledger_error_naming_it(
    engine: Engine, configured: str, post: Callable[..., PostResult], fake: FakePennylane,
    handler: PennylaneHandler, clock: Clock,
) -> None:
    fake.journals = [j for j in fake.journals if j["code"] != "VT"]
    post(412)

    assert _relay(engine, handler, clock).dead == 1
    (message,) = _messages(engine)
    assert message.last_error is not None
    assert "journal VT does not exist in the Pennylane company" in message.last_error
    assert "--journal CODE" in message.last_error


def test_an_entry_pennylane_refuses_is_dead_lettered_and_its_ids_looked_up_again(
    engine: Engine, configured: str, post: Callable[..., PostResult], fake: FakePennylane,
    handler: PennylaneHandler, clock: Clock,
) -> None:
    post(412)
    assert _relay(engine, handler, clock).sent == 1  # the account ids are cached now
    fake.accounts = [a for a in fake.accounts if a["number"] != "658000"]
    replaced = post(413, CORRECTED)

    report = _relay(engine, handler, clock)

    # The reversal still names 658000: Pennylane refuses it (422) with its own words.
    assert (report.sent, report.dead) == (1, 1)
    reversal = _message(engine, replaced.reversal_id or 0)
    with session_scope(engine) as session:
        (dead,) = outbox.list_messages(session, status="dead")
        assert dead.message == reversal
        assert "422 unprocessable_entity): Ledger account not found" in (dead.last_error or "")
        outbox.retry(session, event_ids=[reversal.event_id], now=clock())
    # The refusal dropped the cached ids: asked again, the account is named as missing.
    assert _relay(engine, handler, clock).dead == 1
    with session_scope(engine) as session:
        (dead,) = outbox.list_messages(session, status="dead")
    assert "account 658000 does not exist in the Pennylane company" in (dead.last_error or "")


def test_pennylane_refuses_an_unbalanced_entry_with_a_ledger_finding(
    fake: FakePennylane,
) -> None:
    vt, account = fake.journals[1]["id"], fake.accounts[0]["id"]
    payload = EntryPayload(BUSINESS_DAY, "x", vt, "p", (
        EntryLinePayload(account, Decimal("1.00"), Decimal("0.00"), "x"),
        EntryLinePayload(account, Decimal("0.00"), Decimal("2.00"), "x")))
    with _api(fake) as api, pytest.raises(PennylaneRejected) as caught:
        api.create_ledger_entry(payload)
    assert caught.value.status_code == 422
    assert caught.value.category.value == "ledger"
    assert "Entry lines are not balanced" in str(caught.value)
    assert fake.entries == []


def test_several_accounts_with_one_number_the_enabled_one_with_the_lowest_id_is_used(
    fake: FakePennylane,
) -> None:
    disabled = fake.add_account("706300", enabled=False)
    oldest = fake.add_account("706300")
    fake.add_account("706300")
    fake.add_account("7063001")  # a longer number with the same prefix is another account
    resolver = Resolver()
    with _api(fake) as api:
        ids = resolver.account_ids(api, "company", ["706300", "706100"])
        assert ids["706300"] == oldest != disabled
        requests = len(fake.log)
        assert resolver.account_ids(api, "company", ["706300"]) == {"706300": oldest}
        assert len(fake.log) == requests  # cached

    fake.accounts = [a for a in fake.accounts if a["number"] != "706300" or not a["enabled"]]
    with _api(fake) as api, pytest.raises(
            PennylaneRejected, match="account 706300 is disabled in the Pennylane company"):
        Resolver().account_ids(api, "company", ["706300"])


def test_a_refused_token_dead_letters_without_showing_it(
    engine: Engine, configured: str, post: Callable[..., PostResult], fake: FakePennylane,
    clock: Clock,
) -> None:
    post(412)
    wrong = "plk-revoked-token-123"
    handler = _handler(engine, fake, clock, environ={TOKEN_ENV: wrong})

    assert _relay(engine, handler, clock).dead == 1
    (message,) = _messages(engine)
    assert message.last_error is not None
    assert "401 unauthorized" in message.last_error
    assert "issue a new one in Pennylane" in message.last_error
    assert wrong not in message.last_error


def test_a_missing_token_keeps_the_push_waiting_and_names_the_variable(
    engine: Engine, configured: str, post: Callable[..., PostResult], fake: FakePennylane,
    clock: Clock,
) -> None:
    post(412)
    handler = _handler(engine, fake, clock, environ={})

    report = _relay(engine, handler, clock)

    assert (report.deferred, report.dead) == (1, 0)
    (message,) = _messages(engine)
    assert message.status == "pending" and message.attempts == 0
    assert f"environment variable {TOKEN_ENV} is not set" in (message.last_error or "")
    assert fake.log == []


def test_tokens_are_read_by_name_and_a_missing_one_is_named() -> None:
    env = TokenRef("env", TOKEN_ENV)
    assert load_token(env, environ={TOKEN_ENV: f" {TOKEN}\n"}) == TOKEN
    with pytest.raises(ConfigurationError, match=f"environment variable {TOKEN_ENV} is not set"):
        load_token(env, environ={TOKEN_ENV: ""})

    block = TokenRef("block", "pennylane-petit-zinc")
    assert load_token(block, load_block={"pennylane-petit-zinc": TOKEN}.__getitem__) == TOKEN

    def no_block(name: str) -> str:
        raise ValueError(f"Unable to find block document named {name}")

    with pytest.raises(ConfigurationError,
                       match="Prefect Secret block 'pennylane-petit-zinc' cannot be loaded"):
        load_token(block, load_block=no_block)
    with pytest.raises(ConfigurationError, match="not an environment variable name"):
        TokenRef("env", "NOT A NAME")


# --- rate limit -----------------------------------------------------------------------------


def test_a_429_is_honoured_by_waiting_retry_after_then_sending_again(
    engine: Engine, configured: str, post: Callable[..., PostResult], fake: FakePennylane,
    handler: PennylaneHandler, clock: Clock,
) -> None:
    post(412)
    fake.throttle(1, retry_after=1)

    started = time.monotonic()
    report = _relay(engine, handler, clock)

    assert report.sent == 1
    assert time.monotonic() - started >= 1.0
    assert fake.statuses()[0] == 429 and fake.statuses()[-1] == 201
    assert len(fake.entries) == 1


def test_a_long_retry_after_is_left_to_the_outbox_not_slept_through(
    engine: Engine, configured: str, post: Callable[..., PostResult], fake: FakePennylane,
    handler: PennylaneHandler, clock: Clock,
) -> None:
    post(412)
    fake.throttle(1, retry_after=600)

    started = time.monotonic()
    assert _relay(engine, handler, clock).retried == 1

    assert time.monotonic() - started < 5
    (message,) = _messages(engine)
    assert message.next_attempt_at >= NOW + timedelta(seconds=600)
    assert "rate limited by Pennylane (retry after 600 s)" in (message.last_error or "")
    assert fake.entries == []


def test_the_servers_own_rate_limit_is_honoured_when_the_client_sends_too_fast(
    fake: FakePennylane,
) -> None:
    fake.rate_limit, fake.window = 4, 1.0
    too_fast = RateLimiter(100, 1.0)
    with PennylaneClient(TOKEN, url=fake.url, limiter=too_fast) as api:
        journals = [api.journals() for _ in range(6)]
    assert all(len(j) == 2 for j in journals)
    assert 429 in fake.statuses()
    assert fake.statuses().count(200) == 6


def test_the_client_side_limiter_keeps_every_thread_of_a_token_within_the_limit(
    fake: FakePennylane,
) -> None:
    fake.rate_limit, fake.window = 5, 1.0
    # The margin of the client's own limiter: it counts departures, the server arrivals.
    shared = RateLimiter(5, 1.0 + RATE_MARGIN)
    errors: list[BaseException] = []

    def calls() -> None:
        try:
            with PennylaneClient(TOKEN, url=fake.url, limiter=shared) as api:
                for _ in range(4):
                    api.journals()
        except BaseException as exc:
            errors.append(exc)

    started = time.monotonic()
    threads = [threading.Thread(target=calls) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert fake.statuses() == [200] * 12  # never a 429
    assert time.monotonic() - started >= 2.0  # 12 requests at 5 per second


# --- never twice ----------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["timeout", "500", "drop"])
def test_an_uncertain_failure_after_pennylane_created_the_entry_makes_no_duplicate(
    engine: Engine, configured: str, post: Callable[..., PostResult], fake: FakePennylane,
    handler: PennylaneHandler, clock: Clock, fault: Fault,
) -> None:
    post(412)
    fake.fail_next_post(fault)

    first = _relay(engine, handler, clock)

    assert (first.sent, first.retried) == (0, 1)
    assert len(fake.entries) == 1  # Pennylane has it, we do not know
    (message,) = _messages(engine)
    assert "it may have been created" in (message.last_error or "")
    assert [(p.status, p.post_attempts) for p in _pushes(engine)] == [("pending", 1)]

    clock.advance(timedelta(hours=1))
    second = _relay(engine, handler, clock)

    assert second.sent == 1
    assert len(fake.entries) == 1
    assert len(fake.posts()) == 1  # looked up, not posted again
    assert [p.remote_id for p in _pushes(engine)] == [str(fake.entries[0]["id"])]


def test_a_crash_between_the_push_and_its_mark_makes_no_duplicate(
    engine: Engine, configured: str, post: Callable[..., PostResult], fake: FakePennylane,
    handler: PennylaneHandler, clock: Clock,
) -> None:
    result = post(412)
    # The relay's remote call succeeds, then the process dies before marking anything.
    remote_id = handler.deliver(_message(engine, result.entry_id))
    assert [p.status for p in _pushes(engine)] == ["pending"]

    restarted = _handler(engine, fake, clock)  # a new process: nothing cached
    assert _relay(engine, restarted, clock).sent == 1

    assert len(fake.entries) == 1 and len(fake.posts()) == 1
    assert [(p.status, p.remote_id) for p in _pushes(engine)] == [("pushed", remote_id)]


def test_two_pushes_of_one_entry_at_once_post_it_once(
    engine: Engine, configured: str, post: Callable[..., PostResult], fake: FakePennylane,
    handler: PennylaneHandler, monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = post(412)
    counted = push_store.count_post

    def another_relay_counts_first(session: Session, entry_id: int, *, seen: int) -> bool:
        # Between this push's read and its count, another push of the entry counts its POST.
        with session_scope(engine) as other:
            assert counted(other, entry_id, seen=seen)
        return counted(session, entry_id, seen=seen)

    monkeypatch.setattr(push_store, "count_post", another_relay_counts_first)
    with pytest.raises(DeliveryFailed, match="another push of this entry is under way"):
        handler.deliver(_message(engine, result.entry_id))
    assert fake.posts() == []


# --- money and secrets ----------------------------------------------------------------------


def test_amounts_are_sent_as_two_decimal_strings_made_from_decimals() -> None:
    assert amount_text(Decimal("925")) == "925.00"
    assert amount_text(Decimal("0.1")) == "0.10"
    with pytest.raises(MoneyTypeError):
        amount_text(925.0)  # type: ignore[arg-type]
    with pytest.raises(MoneyTypeError):
        amount_text(Decimal("0.001"))
    line = EntryLinePayload(7, Decimal("12.50"), Decimal("0.00"), "x")
    body = EntryPayload(date(2026, 11, 27), "l", 3, "Z1-VT1", (line,)).as_json()
    assert body["ledger_entry_lines"] == [
        {"ledger_account_id": 7, "debit": "12.50", "credit": "0.00", "label": "x"}]
    assert body["date"] == "2026-11-27" and body["currency"] == "EUR"


def test_the_token_is_never_logged(
    engine: Engine, configured: str, post: Callable[..., PostResult], fake: FakePennylane,
    handler: PennylaneHandler, clock: Clock, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    post(412)
    fake.fail_next_post("500")
    _relay(engine, handler, clock)
    clock.advance(timedelta(hours=1))
    assert _relay(engine, handler, clock).sent == 1

    assert "HTTP Request: POST" in caplog.text  # httpx did log its requests, at DEBUG too
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(_api(fake))
    assert all(TOKEN not in (m.last_error or "") for m in _messages(engine))


def test_resolver_rule_is_deterministic_whatever_the_order_pennylane_lists() -> None:
    class Listing:
        def __init__(self, accounts: list[LedgerAccount]) -> None:
            self.accounts = accounts

        def journals(self) -> list[object]:
            return []

        def ledger_accounts(self, number: str) -> list[LedgerAccount]:
            return self.accounts

    accounts = [LedgerAccount(9, "706100", "", True), LedgerAccount(3, "706100", "", True),
                LedgerAccount(1, "706100", "", False)]
    for listing in (accounts, accounts[::-1]):
        ids = Resolver().account_ids(Listing(listing), "c", ["706100"])  # type: ignore[arg-type]
        assert ids == {"706100": 3}


# --- command line ---------------------------------------------------------------------------


def test_the_command_line_configures_pushes_after_a_fix_and_reports_without_the_token(
    tmp_path: Path, fake: FakePennylane, make_entry: Callable[..., Entry],
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    engine = make_engine(url)
    upgrade(engine)
    from toporder_sync.ledger.clients import activate_client
    from toporder_sync.ledger.inbox import store_closure

    with session_scope(engine) as session:
        activate_client(session, CLIENT_ID, name="Le Petit Zinc", activated_on=date(2026, 11, 1),
                        now=NOW)
        closure = store_closure(session, CLIENT_ID, business_date=BUSINESS_DAY, raw=b"{}",
                                closure_number=412, establishment_id="est-1",
                                perpetual_total=None, now=NOW)
    service.post(engine, CLIENT_ID, BUSINESS_DAY, closure_id=closure.closure_id,
                 entry=make_entry(number=412), matches=[], warnings=[], now=NOW)
    engine.dispose()
    fake.accounts = [a for a in fake.accounts if a["number"] != "658000"]
    runner = CliRunner()
    env = {"TOPORDER_SYNC_DATABASE_URL": url, "TOPORDER_SYNC_PENNYLANE_URL": fake.url}
    outputs: list[str] = []

    def run(*args: str, extra: dict[str, str] | None = None) -> tuple[int, str]:
        result = runner.invoke(main, ["pennylane", *args], env={**env, **(extra or {})})
        outputs.append(result.output)
        return result.exit_code, result.output

    code, out = run("configure", CLIENT_ID, "--token-env", TOKEN_ENV)
    assert code == 2 and f"environment variable {TOKEN_ENV} is not set" in out
    code, out = run("configure", CLIENT_ID)
    assert code == 2 and "exactly one of --token-env VAR or --token-block NAME" in out
    code, out = run("configure", CLIENT_ID, "--token-env", TOKEN_ENV, extra={TOKEN_ENV: TOKEN})
    assert code == 0, out
    assert f"journal VT, API token from environment variable {TOKEN_ENV}" in out

    days = ("--from", "2026-11-27", "--to", "2026-11-27")
    code, out = run("push", CLIENT_ID, *days, extra={TOKEN_ENV: TOKEN})
    assert code == 1, out
    assert "n°1 entry 2026-11-27 Z412-VT1: dead" in out
    assert "account 658000 does not exist in the Pennylane company" in out

    fake.add_account("658000")  # fixed on the Pennylane side
    code, out = run("push", CLIENT_ID, *days, extra={TOKEN_ENV: TOKEN})
    assert code == 0, out
    assert "1 of 1 entries of 2026-11-27..2026-11-27 in Pennylane" in out

    code, out = run("status", CLIENT_ID, "--json")
    assert code == 0, out
    (entry,) = json.loads(out)
    assert entry["pushed"] is True and entry["piece_number"] == "Z412-VT1"
    assert entry["remote_id"] == str(fake.entries[0]["id"]) and entry["last_error"] is None
    assert len(fake.entries) == 1

    code, out = run("status", "nobody")
    assert code == 3
    assert not any(TOKEN in output for output in outputs)


# --- the fake itself follows the API's shapes -----------------------------------------------


def test_listings_are_read_page_after_page(fake: FakePennylane) -> None:
    vt = fake.journals[1]["id"]
    for n in range(230):
        fake.entries.append({"id": fake.new_id(), "label": f"e{n}", "date": "2026-11-27",
                             "journal_id": vt, "piece_number": f"P{n}", "currency": "EUR",
                             "ledger_entry_lines": []})
    fake.entries.append({"id": fake.new_id(), "label": "other day", "date": "2026-11-26",
                         "journal_id": vt, "piece_number": "P0", "currency": "EUR",
                         "ledger_entry_lines": []})
    with _api(fake) as api:
        listed = api.ledger_entries(vt, BUSINESS_DAY)
    assert [e.piece_number for e in listed] == [f"P{n}" for n in range(230)]
    assert [e.status for e in fake.log] == [200, 200, 200]  # 100 + 100 + 30


def test_errors_and_rate_limit_headers_have_the_apis_shape(fake: FakePennylane) -> None:
    auth = {"authorization": f"Bearer {TOKEN}"}
    missing = httpx.get(f"{fake.url}/nothing_here", headers=auth)
    assert missing.status_code == 404
    assert set(missing.json()) == {"error", "message", "details"}
    assert {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"} <= set(missing.headers)
    assert missing.headers["ratelimit-limit"] == "25"
    refused = httpx.get(f"{fake.url}/journals", headers={"authorization": "Bearer nope"})
    assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
    fake.throttle(1, retry_after=3)
    throttled = httpx.get(f"{fake.url}/journals", headers=auth)
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "3"

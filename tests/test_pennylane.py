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
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from conftest import BUSINESS_DAY, CLIENT_ID, CORRECTED, NOW, Clock, migrated_ledger
from pennylane_fake import TOKEN, FakePennylane, Fault, sales_company
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
from toporder_sync.outbox import DeliveryDeferred, DeliveryFailed, Message
from toporder_sync.pennylane import TOPIC
from toporder_sync.pennylane import store as push_store
from toporder_sync.pennylane.client import (
    EntryLinePayload,
    EntryPayload,
    PennylaneClient,
    PennylaneRejected,
    amount_text,
    close_limiters,
    token_limiter,
)
from toporder_sync.pennylane.sink import PennylaneHandler
from toporder_sync.pennylane.tokens import TokenRef, load_token
from toporder_sync.rate_limit import RateLimiter

TOKEN_ENV = "PENNYLANE_TOKEN_PETIT_ZINC"  # noqa: S105 (a variable name)
ACCOUNTS = ("511500", "511800", "530000", "658000", "706100", "706200", "445712", "445711",
            "419100", "467500")




# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated ledger: SQLite, unless a test asks for ``postgresql`` (indirect)."""
    with migrated_ledger(request, tmp_path) as engine:
        yield engine


@pytest.fixture(autouse=True)
def _limiters() -> Iterator[None]:
    """The token limiters a command made for a test's ledger go with it."""
    yield
    close_limiters()


@pytest.fixture
def fake() -> Iterator[FakePennylane]:
    """A Pennylane company with the sales journal VT and every account of the worked example."""
    with sales_company(ACCOUNTS, hang=1.0) as pennylane:
        yield pennylane


@pytest.fixture
def handler(engine: Engine, fake: FakePennylane, clock: Clock) -> Iterator[PennylaneHandler]:
    handler = _handler(engine, fake, clock)
    yield handler
    handler.close()


def _handler(engine: Engine, fake: FakePennylane, clock: Clock, *,
             environ: dict[str, str] | None = None) -> PennylaneHandler:
    # A fresh handler and limiter: what a new process would have (the ids cached in the ledger
    # are shared, as they are between processes).
    return PennylaneHandler(
        engine,
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

    with pytest.raises(DeliveryDeferred, match=r"waits for n°1 \(entry\) of the same day"):
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


def test_an_account_gone_from_pennylane_is_looked_up_again_and_named_at_once(
    engine: Engine, configured: str, post: Callable[..., PostResult], fake: FakePennylane,
    handler: PennylaneHandler, clock: Clock,
) -> None:
    post(412)
    assert _relay(engine, handler, clock).sent == 1  # the account ids are cached now
    fake.accounts = [a for a in fake.accounts if a["number"] != "658000"]
    replaced = post(413, CORRECTED)

    report = _relay(engine, handler, clock)

    # The reversal still names 658000's cached id: Pennylane refuses it (422), the ids are
    # looked up again, and the account is named as missing. The replacement waits for it.
    assert (report.sent, report.dead, report.deferred) == (0, 1, 1)
    reversal = _message(engine, replaced.reversal_id or 0)
    with session_scope(engine) as session:
        (dead,) = outbox.list_messages(session, status="dead")
    assert dead.message == reversal
    assert "account 658000 does not exist in the Pennylane company" in (dead.last_error or "")
    assert [p.status for p in fake.posts()] == [201, 422]

    fake.add_account("658000")  # fixed on the Pennylane side, with a new id
    with session_scope(engine) as session:
        outbox.retry(session, event_ids=[reversal.event_id], now=clock())
    # The replacement, woken when the reversal went, goes in the same relay.
    assert _relay(engine, handler, clock).sent == 2
    assert [e["piece_number"] for e in fake.entries] == ["Z412-VT1", "Z412-VT2", "Z413-VT3"]


def test_an_id_changed_in_pennylane_is_looked_up_again_and_the_entry_sent_once_more(
    engine: Engine, configured: str, post: Callable[..., PostResult], fake: FakePennylane,
    handler: PennylaneHandler, clock: Clock,
) -> None:
    post(412)
    assert _relay(engine, handler, clock).sent == 1
    # 658000 deleted and created again in Pennylane: same number, new id.
    fake.accounts = [a for a in fake.accounts if a["number"] != "658000"]
    new_id = fake.add_account("658000")
    replaced = post(413, CORRECTED)

    assert _relay(engine, handler, clock).sent == 2

    assert [p.status for p in fake.posts()] == [201, 422, 201, 201]
    reversal = fake.entries[1]
    assert new_id in [line["ledger_account_id"] for line in reversal["ledger_entry_lines"]]
    assert [p.status for p in _pushes(engine)] == ["pushed"] * 3
    assert replaced.entry_id == _pushes(engine)[2].entry_id


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
    # The client counts departures, the server arrivals: on a loaded machine a request can
    # reach the server later than RATE_MARGIN after it left, and the server then sees six in
    # one of its windows (seen once, under CI). A margin of a whole window keeps this test
    # about the sharing between threads, not about the machine's load.
    shared = RateLimiter(5, 2 * fake.window)
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
    assert time.monotonic() - started >= 4.0  # 12 requests at 5 per 2 seconds


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


# --- ledger order ---------------------------------------------------------------------------


def _attempts(engine: Engine) -> list[tuple[int, str, int]]:
    """(entry id, outbox status, failed attempts so far) of each push, oldest entry first."""
    return [(m.payload["entry_id"], m.status, m.attempts) for m in _messages(engine)]


@pytest.mark.parametrize(
    "engine", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_a_dropped_original_holds_its_day_back_without_spending_the_others_attempts(
    engine: Engine, configured: str, post: Callable[..., PostResult], fake: FakePennylane,
    handler: PennylaneHandler, clock: Clock,
) -> None:
    first = post(412)
    replaced = post(413, CORRECTED)
    fake.fail_next_post("drop")

    report = _relay(engine, handler, clock)

    # The original was created, but we do not know it: its reversal and replacement wait.
    assert (report.retried, report.deferred, report.sent) == (1, 2, 0)
    assert [e["piece_number"] for e in fake.entries] == ["Z412-VT1"]
    assert _attempts(engine) == [(first.entry_id, "pending", 1),
                                 (replaced.reversal_id, "pending", 0),
                                 (replaced.entry_id, "pending", 0)]
    with session_scope(engine) as session:
        waiting = push_store.push_statuses(session, configured)
    assert [(s.state, s.waits_for) for s in waiting] == [
        ("pending", None), ("waiting", 1), ("waiting", 1)]
    # Looked at again while it waits (a relay every few seconds): still no attempt spent.
    for _ in range(3):
        clock.advance(timedelta(seconds=5))
        _relay(engine, handler, clock)
    assert [a for _, _, a in _attempts(engine)] == [1, 0, 0]

    clock.advance(timedelta(minutes=5))
    report = _relay(engine, handler, clock)

    # The original is found (not posted again), then the reversal, then the replacement.
    assert report.sent == 3
    assert [e["piece_number"] for e in fake.entries] == ["Z412-VT1", "Z412-VT2", "Z413-VT3"]
    assert len(fake.posts()) == 3
    assert [(status, a) for _, status, a in _attempts(engine)] == [
        ("sent", 2), ("sent", 1), ("sent", 1)]


def test_a_dropped_reversal_holds_the_replacement_back_until_it_is_found(
    engine: Engine, configured: str, post: Callable[..., PostResult], fake: FakePennylane,
    handler: PennylaneHandler, clock: Clock,
) -> None:
    post(412)
    assert _relay(engine, handler, clock).sent == 1
    replaced = post(413, CORRECTED)
    fake.fail_next_post("drop")

    report = _relay(engine, handler, clock)

    assert (report.retried, report.deferred) == (1, 1)
    assert [e["piece_number"] for e in fake.entries] == ["Z412-VT1", "Z412-VT2"]
    with session_scope(engine) as session:
        new = next(s for s in push_store.push_statuses(session, configured)
                   if s.entry_id == replaced.entry_id)
    assert (new.state, new.waits_for, new.attempts) == ("waiting", 2, 0)

    clock.advance(timedelta(minutes=5))
    assert _relay(engine, handler, clock).sent == 2

    assert [e["piece_number"] for e in fake.entries] == ["Z412-VT1", "Z412-VT2", "Z413-VT3"]
    # The replacement's POST came after the lookup that found the reversal in Pennylane.
    requests = [(e.method, e.path) for e in fake.log]
    lookup = max(i for i, r in enumerate(requests) if r == ("GET", "/ledger_entries"))
    assert requests[lookup + 1:] == [("POST", "/ledger_entries")]
    assert len(fake.posts()) == 3


def test_other_days_do_not_wait_for_a_day_held_back(
    engine: Engine, configured: str, client_id: str, post: Callable[..., PostResult],
    store: Callable[..., StoreResult], make_entry: Callable[..., Entry], fake: FakePennylane,
    handler: PennylaneHandler, clock: Clock,
) -> None:
    post(412)
    post(413, CORRECTED)
    next_day = BUSINESS_DAY + timedelta(days=1)
    stored = store(b'{"closure": 414}', business_date=next_day, number=414)
    service.post(engine, client_id, next_day, closure_id=stored.closure_id,
                 entry=make_entry(number=414, business_date=next_day), matches=[],
                 warnings=[], now=NOW)
    fake.fail_next_post("drop")

    report = _relay(engine, handler, clock)

    assert (report.retried, report.deferred, report.sent) == (1, 2, 1)
    assert [e["date"] for e in fake.entries] == ["2026-11-27", "2026-11-28"]


# --- pennylane push ---------------------------------------------------------------------------


def test_a_push_right_after_a_failed_delivery_sends_now_and_only_that_clients_entries(
    engine: Engine, configured: str, post: Callable[..., PostResult], fake: FakePennylane,
    handler: PennylaneHandler, clock: Clock, make_entry: Callable[..., Entry],
) -> None:
    from toporder_sync.ledger.clients import activate_client
    from toporder_sync.ledger.inbox import store_closure
    from toporder_sync.pennylane.push import push_range

    other = "cafe-des-arts"
    with session_scope(engine) as session:
        activate_client(session, other, name="Café des Arts", activated_on=date(2026, 11, 1),
                        now=NOW)
        push_store.configure(session, other, token=TokenRef("env", TOKEN_ENV), now=NOW)
        closure = store_closure(session, other, business_date=BUSINESS_DAY, raw=b"{}",
                                closure_number=9, establishment_id="est-9",
                                perpetual_total=None, now=NOW)
    service.post(engine, other, BUSINESS_DAY, closure_id=closure.closure_id,
                 entry=make_entry(number=9), matches=[], warnings=[], now=NOW)
    first = post(412)
    post(413, CORRECTED)
    fake.fail_next_post("500")
    # A relay's attempt fails, just now: the message's next attempt is a minute away.
    (failed,) = outbox.deliver(engine, {TOPIC: handler}, [push_store.event_id(first.entry_id)],
                               now=clock)
    assert failed.outcome == "retried"
    fake.log.clear()

    report = push_range(engine, configured, BUSINESS_DAY, BUSINESS_DAY, handler, now=clock,
                        sleep=lambda seconds: None)

    assert report.missing == [] and report.passes == 1
    assert [(s.position, s.kind, s.state) for s in report.statuses] == [
        (1, "entry", "pushed"), (2, "reversal", "pushed"), (3, "entry", "pushed")]
    # Found (the 500 had created it), then the reversal and the replacement, in that order.
    assert [e["piece_number"] for e in fake.entries] == ["Z412-VT1", "Z412-VT2", "Z413-VT3"]
    assert len(fake.posts()) == 2
    # The other client's entry is left to the relay.
    with session_scope(engine) as session:
        (theirs,) = outbox.list_messages(session, client_id=other)
    assert (theirs.status, theirs.message.attempts) == ("pending", 0)


def test_a_push_waits_as_pennylane_asks_then_delivers(
    engine: Engine, configured: str, post: Callable[..., PostResult], fake: FakePennylane,
    handler: PennylaneHandler, clock: Clock,
) -> None:
    from toporder_sync.pennylane.push import push_range

    post(412)
    fake.throttle(5, retry_after=20)  # past the client's own patience: left to the push
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        fake.throttle(0)  # the wait is over

    report = push_range(engine, configured, BUSINESS_DAY, BUSINESS_DAY, handler, now=clock,
                        sleep=sleep)

    assert report.missing == [] and report.passes == 2
    assert len(waits) == 1 and waits[0] >= 20
    assert len(fake.entries) == 1


def test_a_push_told_to_wait_longer_than_its_patience_says_so(
    engine: Engine, configured: str, post: Callable[..., PostResult], fake: FakePennylane,
    handler: PennylaneHandler, clock: Clock,
) -> None:
    from toporder_sync.pennylane.push import push_range

    post(412)
    fake.throttle(5, retry_after=3600)

    report = push_range(engine, configured, BUSINESS_DAY, BUSINESS_DAY, handler, now=clock,
                        sleep=lambda seconds: pytest.fail("slept through a one-hour wait"))

    assert [s.state for s in report.missing] == ["pending"]
    assert report.wait == 3600 and report.passes == 1


def test_a_push_leaves_a_message_another_relay_holds_to_it(
    engine: Engine, configured: str, post: Callable[..., PostResult], fake: FakePennylane,
    clock: Clock,
) -> None:
    result = post(412)
    with session_scope(engine) as session:
        row = session.scalars(select(OutboxRow).where(OutboxRow.topic == TOPIC)).one()
        row.next_attempt_at = row.claimed_until = NOW + outbox.LEASE  # a relay holds it
    handler = _handler(engine, fake, clock)

    assert outbox.deliver(engine, {TOPIC: handler}, [push_store.event_id(result.entry_id)],
                          now=clock) == []
    assert fake.log == []
    clock.advance(outbox.LEASE)  # its claim ran out: the relay died
    (delivery,) = outbox.deliver(engine, {TOPIC: handler},
                                 [push_store.event_id(result.entry_id)], now=clock)
    assert delivery.outcome == "sent"
    handler.close()


# --- ids cached in the ledger -----------------------------------------------------------------


def test_a_resend_from_a_new_process_costs_one_request_an_entry(
    engine: Engine, configured: str, post: Callable[..., PostResult], fake: FakePennylane,
    handler: PennylaneHandler, clock: Clock,
) -> None:
    post(412)
    assert _relay(engine, handler, clock).sent == 1  # the ids are in the ledger now
    post(413, CORRECTED)
    fake.throttle(1, retry_after=600)  # the reversal's POST refused for now: not created
    report = _relay(engine, handler, clock)
    assert (report.retried, report.deferred) == (1, 1)
    assert [p.post_attempts for p in _pushes(engine)] == [1, 0, 0]
    fake.log.clear()

    clock.advance(timedelta(minutes=11))
    restarted = _handler(engine, fake, clock)  # a new process: only the ledger remembers
    assert _relay(engine, restarted, clock).sent == 2
    restarted.close()

    # No journal or account lookup, no search for an entry certainly not created.
    assert [(e.method, e.path, e.status) for e in fake.log] == [
        ("POST", "/ledger_entries", 201), ("POST", "/ledger_entries", 201)]


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
    assert "2026-11-27 VT 1/1 n°1 entry Z412-VT1: dead" in out
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


def test_status_shows_a_corrected_days_three_entries_in_ledger_order(
    engine: Engine, configured: str, post: Callable[..., PostResult], fake: FakePennylane,
    handler: PennylaneHandler, clock: Clock,
) -> None:
    post(412)
    post(413, CORRECTED)
    fake.fail_next_post("500")
    _relay(engine, handler, clock)  # the original failed: the other two wait for it
    env = {"TOPORDER_SYNC_DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "TOPORDER_SYNC_PENNYLANE_URL": fake.url, TOKEN_ENV: TOKEN}
    runner = CliRunner()

    waiting = runner.invoke(main, ["pennylane", "status", configured], env=env)
    assert waiting.exit_code == 0, waiting.output
    error = _messages(engine)[0].last_error
    assert waiting.output.splitlines() == [
        f"2026-11-27 VT 1/3 n°1 entry Z412-VT1: pending; last error: {error}",
        "2026-11-27 VT 2/3 n°2 reversal of n°1 Z412-VT2: waiting for n°1",
        "2026-11-27 VT 3/3 n°3 entry replacing n°1 Z413-VT3: waiting for n°1",
    ]

    pushed = runner.invoke(main, ["pennylane", "push", configured, "--from", "2026-11-27",
                                  "--to", "2026-11-27"], env=env)
    assert pushed.exit_code == 0, pushed.output
    assert "3 of 3 entries of 2026-11-27..2026-11-27 in Pennylane" in pushed.output

    shown = runner.invoke(main, ["pennylane", "status", configured, "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    items = json.loads(shown.output)
    ids = [int(item["remote_id"]) for item in items]
    assert [(i["position"], i["kind"], i["reverses_entry_number"], i["replaces_entry_number"],
             i["state"]) for i in items] == [(1, "entry", None, None, "pushed"),
                                             (2, "reversal", 1, None, "pushed"),
                                             (3, "entry", None, 1, "pushed")]
    assert ids == sorted(ids) == [e["id"] for e in fake.entries]  # received in that order


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

"""The client-day flow under Prefect's test harness, on a SQLite ledger.

Checks the final state names a person reads in the UI, the run's name and tags, the artifact,
the ledger rows, idempotent reruns, and that only transient failures are retried.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect import tags
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactCollectionFilter,
    ArtifactCollectionFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter
from prefect.states import Completed, Failed
from prefect.testing.utilities import prefect_test_harness
from samples import encode, sample_document

from toporder_sync import outbox, service
from toporder_sync.core.errors import TransientError
from toporder_sync.flows.daily import post_client_day
from toporder_sync.ledger import clients, days, journal
from toporder_sync.ledger.db import DATABASE_URL_ENV, get_engine, session_scope, upgrade
from toporder_sync.tasks import runtime
from toporder_sync.tasks.runtime import only_transient

pytestmark = pytest.mark.prefect

DAY = date(2026, 11, 27)
NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


@pytest.fixture(scope="module", autouse=True)
def harness() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv(DATABASE_URL_ENV, url)
    engine = get_engine(url)
    upgrade(engine)
    with session_scope(engine) as session:
        client = clients.activate_client(session, "petit-zinc", name="Le Petit Zinc",
                                         activated_on=date(2026, 11, 1), now=NOW)
    return engine, client.integration_id


def deliver(ledger: Any, sample: str, **closure: str) -> None:
    engine, integration_id = ledger
    document = sample_document(sample)
    document["integration_id"] = integration_id
    document["closure"].update(closure)
    service.receive(engine, encode(document), sample, now=NOW)


def run(day: date = DAY) -> Any:
    with tags("client:petit-zinc"):
        return asyncio.run(post_client_day("petit-zinc", day, return_state=True))


async def _flow_run(state: Any) -> Any:
    async with get_client() as client:
        return await client.read_flow_run(state.state_details.flow_run_id)


def test_valid_day_is_posted_once_and_rerun_changes_nothing(ledger: Any) -> None:
    deliver(ledger, "valid-metropole.json")
    state = run()
    assert state.is_completed() and state.name == "Posted", state.message
    assert "entry n°1 posted" in state.message
    flow_run = asyncio.run(_flow_run(state))
    assert flow_run.name == "petit-zinc 2026-11-27"
    assert "client:petit-zinc" in flow_run.tags

    again = run()
    assert again.is_completed() and "unchanged" in again.message
    engine, _ = ledger
    with session_scope(engine) as session:
        entries = journal.entries_between(session, "petit-zinc", DAY, DAY)
        [status] = days.day_statuses(session, "petit-zinc")
    assert [e.number for e in entries] == [1]
    assert status.state == "posted" and status.flow_run_id is not None


def test_posted_day_leaves_an_artifact_with_the_entry(ledger: Any) -> None:
    deliver(ledger, "valid-metropole.json")
    state = run()

    async def artifacts() -> list[Any]:
        async with get_client() as client:
            return await client.read_artifacts(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(
                    any_=[state.state_details.flow_run_id])))

    by_key = {artifact.key: artifact for artifact in asyncio.run(artifacts())}
    assert sorted(by_key) == ["board-2026-11-27", "client-petit-zinc"]
    client = by_key["client-petit-zinc"].data
    assert "| 511500 |" in client and "**1,525.00**" in client
    assert "## Recent days" in client and "| 2026-11-27 | Posted | nobody |" in client
    # A day of its own, run alone: its board says nobody need act.
    assert by_key["board-2026-11-27"].description.startswith(
        "**2026-11-27**: 0 client-days need somebody.")

def test_a_run_never_asks_the_server_for_result_storage(
    ledger: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flow keeps no result (``runtime.RESULT_STORAGE``): none of the three lookups of the
    server's default result storage prefect makes for a flow run that does not say so."""
    paths: list[str] = []
    for client_class in (httpx.Client, httpx.AsyncClient):
        original = client_class.send

        def send(self: Any, request: httpx.Request, *args: Any,
                 original: Any = original, **kwargs: Any) -> Any:
            paths.append(request.url.path)
            return original(self, request, *args, **kwargs)

        monkeypatch.setattr(client_class, "send", send)
    deliver(ledger, "valid-metropole.json")
    state = run()
    assert state.name == "Posted", state.message
    assert any(path.endswith("/set_state") for path in paths), paths  # the hook saw the run
    assert not [path for path in paths if path.endswith("/admin/storage")]



@pytest.mark.parametrize(("sample", "changes", "mapping", "name", "words", "category"), [
    ("invalid-unbalanced.json", {}, None, "POS data error", "debit 1,520.00 ≠ credit 1,525.00",
     "pos"),
    ("invalid-vat-rate.json", {}, None, "POS data error", "19.6 %", "pos"),
    ("valid-metropole.json", {}, ("Carte bancaire", "511500"), "Mapping error",
     "does not match method 'Carte Bancaire' exactly", "ledger"),
])
def test_bad_days_fail_with_a_state_naming_who_must_act(
    ledger: Any, sample: str, changes: dict[str, str], mapping: tuple[str, str] | None,
    name: str, words: str, category: str,
) -> None:
    engine, _ = ledger
    if mapping:
        with session_scope(engine) as session:
            clients.set_mapping(session, "petit-zinc", *mapping, now=NOW)
    deliver(ledger, sample, **changes)
    state = run()
    assert state.is_failed() and state.name == name and words in state.message
    with session_scope(engine) as session:
        [status] = days.day_statuses(session, "petit-zinc")
        assert journal.entries_between(session, "petit-zinc", DAY, DAY) == []
        methods = {m.name for m in days.list_methods(session, "petit-zinc")}
    assert status.state == "flagged" and status.error_category == category
    assert any(words in m.message for m in status.messages)
    assert "Carte Bancaire" in methods  # remembered even when the day is flagged


def test_day_before_activation_is_refused_whoever_asks(ledger: Any) -> None:
    state = run(date(2026, 10, 31))
    assert state.is_cancelled() and state.name == "Refused"
    assert "2026-10-31" in state.message and "2026-11-01" in state.message


def test_day_not_over_is_refused(ledger: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """On the flows' clock, fixed: the real one made the test fail each night between 23:00
    UTC and midnight, when the UTC date's day is over in Paris (seen 2026-12-06 23:5x UTC)."""
    monkeypatch.setattr(runtime, "now", lambda: NOW)
    state = run(NOW.date())
    assert state.is_cancelled() and state.name == "Refused" and "not over" in state.message


def test_no_closure_means_missing(ledger: Any) -> None:
    state = run(date(2026, 11, 20))
    assert state.is_failed() and state.name == "Missing closure"
    engine, _ = ledger
    with session_scope(engine) as session:
        [status] = days.day_statuses(session, "petit-zinc")
    assert status.state == "missing"


def test_a_transient_failure_is_retried_and_the_day_posted(
    ledger: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    deliver(ledger, "valid-metropole.json")
    real_post, calls = service.post, []

    def flaky_post(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise TransientError("database is locked")
        return real_post(*args, **kwargs)

    monkeypatch.setattr(service, "post", flaky_post)
    state = run()
    assert state.is_completed(), state.message
    assert len(calls) == 2

    assert "database is locked; retry 1/4 in" in caplog.text  # retried in the run, logged


def test_an_unexpected_error_fails_the_run_at_once_and_records_the_day(
    ledger: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug on a stored closure: the run fails once (never retried), the day is recorded
    ``error`` with the error's type and message, the data team's event is emitted, Toporder is
    not told; after the fix, a rerun posts the day and resolves it."""
    engine, _ = ledger
    since = datetime.now(UTC)
    deliver(ledger, "valid-metropole.json")
    calls: list[int] = []
    real_post = service.post

    def broken_post(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        raise KeyError("a bug")

    monkeypatch.setattr(service, "post", broken_post)
    state = run()
    assert (state.type.value, state.name) == ("FAILED", "Unexpected error")
    assert "KeyError: 'a bug'" in (state.message or "") and len(calls) == 1
    red_run = asyncio.run(_flow_run(state))
    assert {"needs-action", "needs:data-team"} <= set(red_run.tags), red_run.tags
    with session_scope(engine) as session:
        [recorded] = [d for d in days.day_statuses(session, "petit-zinc")
                      if d.business_date == DAY]
        notified = outbox.list_messages(session, client_id="petit-zinc")
    assert recorded.state == "error"
    assert [(m.rule, m.field, m.message) for m in recorded.messages] == [
        ("internal_error", "run", "KeyError: 'a bug'")]
    assert notified == [], "an internal error is not Toporder's to fix"
    [error] = _wait_for_events("toporder.day.error", since, 1)
    assert error.payload["state"] == "Unexpected error"
    assert error.payload["run_url"].endswith(str(red_run.id))

    monkeypatch.setattr(service, "post", real_post)
    fixed = run()
    assert fixed.name == "Posted" and "resolves Unexpected error" in (fixed.message or "")
    [resolved] = _wait_for_events("toporder.day.resolved", since, 1)
    assert resolved.payload["was"] == "Unexpected error"


@pytest.mark.parametrize(("error", "retried"), [
    (TransientError("database is locked"), True),
    (ValueError("bad data"), False),
])
def test_only_transient_errors_are_retried(error: Exception, retried: bool) -> None:
    assert only_transient(None, None, Failed(data=error)) is retried  # type: ignore[arg-type]
    assert only_transient(None, None, Completed()) is False  # type: ignore[arg-type]


def _events(name: str, since: datetime) -> list[Any]:
    async def read() -> list[Any]:
        async with get_client() as client:
            page = await client.read_events(filter=EventFilter(
                event=EventNameFilter(name=[name]), occurred=EventOccurredFilter(since=since)),
                limit=50)
            return list(page.events)
    return asyncio.run(read())


def _wait_for_events(name: str, since: datetime, count: int) -> list[Any]:
    """The server takes the events in a moment after the run emitted them."""
    for _ in range(100):
        found = _events(name, since)
        if len(found) >= count:
            return found
        time.sleep(0.2)
    return _events(name, since)


def test_an_alert_is_raised_once_and_resolved_by_the_run_that_posts_the_day(
        ledger: Any) -> None:
    """Flagged, flagged again alike, then fixed: one flagged event and one notification for
    Toporder, then one resolved event whose run links the red run; tags say who must act."""
    engine, _ = ledger
    client_id = "petit-zinc"
    since = datetime.now(UTC)  # events carry the real time; earlier tests emitted some too
    with session_scope(engine) as session:
        clients.set_mapping(session, client_id, "Carte bancaire", "511500", now=NOW)
    deliver(ledger, "valid-metropole.json")
    red, again = run(), run()
    assert (red.name, again.name) == ("Mapping error", "Mapping error")
    assert "(already reported)" in (again.message or "")
    red_run = asyncio.run(_flow_run(red))
    assert {"needs-action", "needs:accountant", "needs-action:2026-11-27", "toporder-sync",
            "day:2026-11-27", f"client:{client_id}"} <= set(red_run.tags), red_run.tags
    with session_scope(engine) as session:
        notified = [n for n in outbox.list_messages(session, client_id=client_id)
                    if n.message.topic == "day.flagged"]
    assert len(notified) == 1, notified
    [flagged] = _wait_for_events("toporder.day.flagged", since, 1)
    assert flagged.payload["who"] == "the accountant"
    assert flagged.payload["run_url"].endswith(str(red_run.id))

    with session_scope(engine) as session:
        clients.set_mapping(session, client_id, "Carte Bancaire", "511500", now=NOW)
    fixed = run()
    assert fixed.name == "Posted" and "resolves Mapping error" in (fixed.message or "")
    assert "needs-action" not in asyncio.run(_flow_run(fixed)).tags
    # The red runs stay red, but no longer say the day needs somebody.
    for settled in (red, again):
        tags = set(asyncio.run(_flow_run(settled)).tags)
        assert "resolved" in tags and not {"needs-action", "needs:accountant",
                                           "needs-action:2026-11-27"} & tags, tags
    [resolved] = _wait_for_events("toporder.day.resolved", since, 1)
    assert resolved.payload["was"] == "Mapping error"
    assert resolved.payload["was_run_url"].endswith(str(red_run.id))
    assert len(_events("toporder.day.flagged", since)) == 1

    async def latest(key: str) -> Any:
        async with get_client() as client:
            return await client.read_latest_artifacts(
                artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(
                    any_=[key])))
    [client_artifact] = asyncio.run(latest("client-petit-zinc"))
    assert f"raised by run /runs/flow-run/{red_run.id}" in client_artifact.data \
        or str(red_run.id) in client_artifact.data
    [board] = asyncio.run(latest("board-2026-11-27"))
    [row] = board.data if isinstance(board.data, list) else json.loads(board.data)
    assert row["state"] == "Resolved: Posted" and str(red_run.id) in row["was"]
    assert row["run"].endswith(str(fixed.state_details.flow_run_id))


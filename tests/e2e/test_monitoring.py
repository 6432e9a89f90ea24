"""The morning at a glance, on a real ``prefect server`` backed by PostgreSQL.

A dispatch and a catch-up run posted, flagged (POS and mapping), missing and waiting days into
a PostgreSQL ledger; then a mapping is fixed and its day run again as the ``client-day``
deployment would run it. Everything is then read back through the Prefect REST API, as the UI
reads it: the fleet runs' state types and names, the tag filters a data team uses (the days
that need somebody, one client's runs, one business day's runs), the latest version of the
day's board, and exactly one flagged event per flagged day and one resolved event.

The flows run in this process against the server (``temporary_settings``), with the flows'
clock fixed (``tasks.runtime.now``) so that one day waits and another is missing whatever the
hour the test runs at.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactCollectionFilter,
    ArtifactCollectionFilterKey,
    FlowRunFilter,
    FlowRunFilterTags,
)
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter
from prefect.flow_engine import run_flow_async
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Scheduled
from sqlalchemy import Engine, select
from test_fleet_flows import deliver

from e2e.conftest import prefect_server
from toporder_sync.flows.daily import post_client_day
from toporder_sync.flows.fleet import catch_up, dispatch_daily
from toporder_sync.ledger import clients
from toporder_sync.ledger.db import DATABASE_URL_ENV, get_engine, session_scope, upgrade
from toporder_sync.ledger.tables import OutboxRow
from toporder_sync.tasks import runtime

pytestmark = [pytest.mark.postgres, pytest.mark.prefect]

DAY = date(2026, 11, 20)
# The 06:00 dispatch of Europe/Paris for DAY: 05:00 UTC the day after.
MORNING = datetime(2026, 11, 21, 5, 0, tzinfo=UTC)
NOW = MORNING


@pytest.fixture(scope="module")
def prefect_pg_api(postgres_server: str, postgres_admin: Engine,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``prefect server start`` process whose database is PostgreSQL."""
    with postgres_admin.connect() as connection:
        connection.exec_driver_sql('CREATE DATABASE "prefect_monitoring"')
    server_db = postgres_server.replace("postgresql+psycopg", "postgresql+asyncpg")
    with prefect_server(tmp_path_factory.mktemp("prefect-pg-home"),
                        PREFECT_API_DATABASE_CONNECTION_URL=f"{server_db}/prefect_monitoring"
                        ) as api, temporary_settings({PREFECT_API_URL: api}):
        yield api
        runtime.flush_events()


@pytest.fixture
def ledger(postgres_server: str, postgres_admin: Engine,
           monkeypatch: pytest.MonkeyPatch) -> Engine:
    with postgres_admin.connect() as connection:
        connection.exec_driver_sql('CREATE DATABASE "ledger_monitoring"')
    url = f"{postgres_server}/ledger_monitoring"
    monkeypatch.setenv(DATABASE_URL_ENV, url)
    monkeypatch.setattr(runtime, "now", lambda: NOW)
    engine = get_engine(url)
    upgrade(engine)
    return engine


def activate(engine: Engine, client_id: str, *, deadline_hour: int = 12) -> str:
    with session_scope(engine) as session:
        client = clients.activate_client(session, client_id, name=client_id.title(),
                                         activated_on=date(2026, 11, 1),
                                         deadline_hour=deadline_hour, now=NOW)
    return client.integration_id


async def run_as_deployment(flow: Any, parameters: dict[str, Any]) -> Any:
    """Run ``flow`` as a worker runs a deployment run: from a flow run scheduled at MORNING."""
    async with get_client() as client:
        flow_run = await client.create_flow_run(flow, parameters=parameters,
                                                state=Scheduled(scheduled_time=MORNING))
    return await run_flow_async(flow, flow_run=flow_run, parameters=parameters,
                                return_type="state")


async def runs_tagged(*tags: str) -> list[Any]:
    async with get_client() as client:
        return await client.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=list(tags))))


async def latest_artifact(key: str) -> Any:
    async with get_client() as client:
        [artifact] = await client.read_latest_artifacts(artifact_filter=ArtifactCollectionFilter(
            key=ArtifactCollectionFilterKey(any_=[key])))
        return artifact


async def events(name: str, since: datetime, expected: int) -> list[Any]:
    """The events of that name since ``since``, once the server holds ``expected`` of them
    (it writes them asynchronously), or what it holds after 30 s."""
    found: list[Any] = []
    async with get_client() as client:
        for _ in range(60):
            page = await client.read_events(filter=EventFilter(
                event=EventNameFilter(name=[name]), occurred=EventOccurredFilter(since=since)),
                limit=50)
            found = list(page.events)
            if len(found) >= expected:
                await asyncio.sleep(2)  # and no more than that come
                page = await client.read_events(filter=EventFilter(
                    event=EventNameFilter(name=[name]),
                    occurred=EventOccurredFilter(since=since)), limit=50)
                return list(page.events)
            await asyncio.sleep(0.5)
    return found


def test_the_ui_tells_who_must_act_on_each_client_day(prefect_pg_api: str,
                                                       ledger: Engine) -> None:
    since = datetime.now(UTC)
    deliver(ledger, activate(ledger, "alpha"), DAY - timedelta(days=2), 3)
    deliver(ledger, activate(ledger, "bravo"), DAY - timedelta(days=2), 3,
            faults={DAY: frozenset({"unbalanced"})})
    deliver(ledger, activate(ledger, "charlie"), DAY, 1)
    with session_scope(ledger) as session:  # the accountant's mapping misspells the method
        clients.set_mapping(session, "charlie", "Carte bancaire", "511500", now=NOW)
    activate(ledger, "delta", deadline_hour=5)  # no closure, its deadline passed at 05:00
    activate(ledger, "echo")  # no closure, awaited until noon

    dispatch = asyncio.run(run_as_deployment(dispatch_daily,
                                             {"timezone": "Europe/Paris", "hour": 6}))
    assert (dispatch.type.value, dispatch.name) == ("FAILED", "2 for Toporder, 1 mapping")
    assert dispatch.message == ("5 client-days: 1 posted, 2 flagged (1 Mapping error, "
                                "1 POS data error), 1 missing, 1 waiting")

    # A catch-up over the same day runs bravo's flagged day again, alike: no second alert.
    catch = asyncio.run(catch_up(DAY - timedelta(days=2), DAY, ["alpha", "bravo"],
                                 return_state=True))
    assert (catch.type.value, catch.name) == ("FAILED", "1 for Toporder"), catch.message
    assert catch.message == "6 client-days: 5 posted, 1 flagged (1 POS data error)"

    # The accountant fixes the mapping; the day is run again as the client-day deployment does.
    with session_scope(ledger) as session:
        clients.set_mapping(session, "charlie", "Carte Bancaire", "511500", now=NOW)
    fixed = asyncio.run(run_as_deployment(post_client_day, {"client_id": "charlie",
                                                            "business_date": DAY.isoformat()}))
    assert (fixed.type.value, fixed.name) == ("COMPLETED", "Posted"), fixed.message
    fixed_id = str(fixed.state_details.flow_run_id)

    # One filter: the client-days of the morning that need somebody, whatever ran them.
    needing = asyncio.run(runs_tagged(f"needs-action:{DAY}"))
    assert {r.id for r in needing} == {
        r.id for r in asyncio.run(runs_tagged("needs-action", f"day:{DAY}"))}
    assert sorted((r.name, r.state.name) for r in needing) == [
        ("bravo 2026-11-20", "POS data error"), ("bravo 2026-11-20", "POS data error"),
        ("delta 2026-11-20", "Missing closure")]
    assert {tag for r in needing for tag in r.tags if tag.startswith("needs:")} == {
        "needs:toporder"}
    # The same tags on a dispatched day and on a catch-up's.
    assert all({"toporder-sync", "territory:metropole"} <= set(r.tags) for r in needing)
    assert sorted(r.parent_task_run_id is None for r in needing) == [True, True, True]

    # One filter: one client's runs; the red one is linked to the run that resolved it.
    charlie = {r.state.name: r for r in asyncio.run(runs_tagged("client:charlie"))}
    assert sorted(charlie) == ["Mapping error", "Posted"]
    red = charlie["Mapping error"]
    assert red.state_type.value == "FAILED" and "resolved" in red.tags
    assert "needs-action" not in red.tags and str(charlie["Posted"].id) == fixed_id

    # Every client-day run of the day, one filter.
    of_the_day = asyncio.run(runs_tagged("toporder-sync", f"day:{DAY}"))
    assert sorted((r.name, r.state.type.value) for r in of_the_day) == [
        ("alpha 2026-11-20", "COMPLETED"),
        ("bravo 2026-11-20", "FAILED"), ("bravo 2026-11-20", "FAILED"),
        ("charlie 2026-11-20", "COMPLETED"), ("charlie 2026-11-20", "FAILED"),
        ("delta 2026-11-20", "FAILED"),
        ("echo 2026-11-20", "CANCELLED")]

    # The board of the day, its latest version: who must act, and the day resolved.
    board = asyncio.run(latest_artifact(f"board-{DAY}"))
    rows = board.data if isinstance(board.data, list) else json.loads(board.data)
    assert [(r["client"], r["state"], r["who must act"]) for r in rows] == [
        ("bravo", "POS data error", "Toporder"),
        ("delta", "Missing closure", "Toporder"),
        ("charlie", "Resolved: Posted", "nobody"),
        ("echo", "Waiting for closure", "nobody")]
    by_client = {r["client"]: r for r in rows}
    assert by_client["charlie"]["run"].endswith(fixed_id)
    assert by_client["charlie"]["was"].endswith(str(red.id))
    assert board.description.startswith(f"**{DAY}**: 2 client-days need somebody.")
    client_artifact = asyncio.run(latest_artifact("client-charlie"))
    assert f"raised by run {prefect_pg_api.removesuffix('/api')}/runs/flow-run/{red.id}" \
        in client_artifact.data

    # Alerts once: one flagged event per flagged day, one resolved event.
    flagged = asyncio.run(events("toporder.day.flagged", since, 3))
    assert sorted((e.payload["client"], e.payload["state"]) for e in flagged) == [
        ("bravo", "POS data error"), ("charlie", "Mapping error"), ("delta", "Missing closure")]
    [resolved] = asyncio.run(events("toporder.day.resolved", since, 1))
    assert (resolved.payload["client"], resolved.payload["was"]) == ("charlie", "Mapping error")
    with session_scope(ledger) as session:
        notified = session.scalars(select(OutboxRow.client_id)
                                   .where(OutboxRow.topic == "day.flagged")).all()
    assert sorted(notified) == ["bravo", "charlie", "delta"]

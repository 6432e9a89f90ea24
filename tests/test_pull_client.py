"""The pull API client and PullSource against the simulator served on 127.0.0.1.

Retries honour Retry-After and stay bounded, timeouts and cut or garbled bodies are transient
failures never handed on as closures, the token bucket spaces requests across threads, and
PullSource keeps the served bytes in the inbox once.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from toporder_sync import service
from toporder_sync.core.errors import ClosureRejected, ConfigurationError, TransientError
from toporder_sync.ledger import clients, connections
from toporder_sync.ledger.db import make_engine, session_scope
from toporder_sync.ledger.tables import ClosureRow
from toporder_sync.rate_limit import RateLimiter
from toporder_sync.retrying import RetryPolicy
from toporder_sync.simulator import dumps, generate_closure
from toporder_sync.simulator.faults import FaultRule
from toporder_sync.simulator.server import (
    Simulation,
    SimulatorConfig,
    create_app,
    serve_in_thread,
)
from toporder_sync.sources import InboxSource, PullSource, source_for
from toporder_sync.toporder_api import API_TOKEN_ENV, API_URL_ENV, ApiSettings, ToporderApi

NOW = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
DAY = date(2026, 11, 27)
TOKEN = "pull-token-not-to-be-logged"  # noqa: S105 (a test value)
ID = "tpo_pull"

Serve = Callable[..., tuple[Simulation, str]]


@pytest.fixture
def serve() -> Iterator[Serve]:
    stops: list[Callable[[], None]] = []

    def start(*faults: FaultRule) -> tuple[Simulation, str]:
        config = SimulatorConfig(faults=faults, start=DAY - timedelta(days=1), venue="shop",
                                 token=TOKEN)
        simulation = Simulation(config, clock=lambda: NOW)
        running = serve_in_thread(create_app(simulation))
        stops.append(running.stop)
        return simulation, running.base_url

    yield start
    for stop in stops:
        stop()


class Sleeps:
    """Records the waits asked for instead of sleeping them, to keep the tests fast."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def client(base_url: str, *, timeout: float = 2.0, attempts: int = 4,
           sleep: Callable[[float], None] | None = None,
           limiter: RateLimiter | None = None, token: str = TOKEN) -> ToporderApi:
    return ToporderApi(ApiSettings(base_url, token, timeout=timeout),
                       policy=RetryPolicy(attempts=attempts, backoff=0.05, patience=5),
                       limiter=limiter or RateLimiter.per_second(1000), sleep=sleep or Sleeps())


def statuses(simulation: Simulation) -> list[tuple[int, str | None]]:
    return [(r.status, r.fault) for r in simulation.requests]


def test_a_closure_is_returned_byte_for_byte(serve: Serve) -> None:
    simulation, base_url = serve()
    with client(base_url) as api:
        assert api.closure(ID, DAY) == simulation.closure(ID, DAY)
        assert api.closure(ID, DAY - timedelta(days=5)) is None


def test_a_refused_token_is_a_configuration_error(serve: Serve) -> None:
    _, base_url = serve()
    wrong = "not-the-token"
    with client(base_url, token=wrong) as api, \
            pytest.raises(ConfigurationError, match=API_TOKEN_ENV) as refused:
        api.closure(ID, DAY)
    assert wrong not in str(refused.value)


def test_429_is_retried_after_the_retry_after_it_asks_for(serve: Serve) -> None:
    simulation, base_url = serve(FaultRule("429", first=2, retry_after=3))
    sleeps = Sleeps()
    with client(base_url, sleep=sleeps) as api:
        assert api.closure(ID, DAY) == simulation.closure(ID, DAY)
    assert sleeps.waits == [3.0, 3.0]
    assert statuses(simulation) == [(429, "429"), (429, "429"), (200, None)]


def test_retry_after_is_really_waited_for(serve: Serve) -> None:
    simulation, base_url = serve(FaultRule("429", first=1, retry_after=1))
    started = time.monotonic()
    with client(base_url, sleep=time.sleep) as api:
        assert api.closure(ID, DAY) is not None
    assert 1.0 <= time.monotonic() - started < 4
    first, second = simulation.requests
    assert second.arrived - first.arrived >= 1.0


def test_persistent_429_gives_up_as_transient_after_bounded_attempts(serve: Serve) -> None:
    simulation, base_url = serve(FaultRule("429", retry_after=1))
    with client(base_url, attempts=3) as api, pytest.raises(TransientError, match="429"):
        api.closure(ID, DAY)
    assert len(simulation.requests) == 3


def test_a_retry_after_too_long_to_wait_is_left_to_the_task_retry(serve: Serve) -> None:
    simulation, base_url = serve(FaultRule("429", retry_after=60))
    sleeps = Sleeps()
    with client(base_url, sleep=sleeps) as api, pytest.raises(TransientError, match="60"):
        api.closure(ID, DAY)
    assert len(simulation.requests) == 1
    assert sleeps.waits == []


def test_5xx_is_retried_with_backoff(serve: Serve) -> None:
    simulation, base_url = serve(FaultRule("5xx", first=2))
    sleeps = Sleeps()
    with client(base_url, sleep=sleeps) as api:
        assert api.closure(ID, DAY) == simulation.closure(ID, DAY)
    # Jittered within the upper half of a doubling step: [0.025, 0.05), then [0.05, 0.1).
    first, second = sleeps.waits
    assert 0.025 <= first < 0.05 <= second < 0.1
    assert statuses(simulation) == [(503, "5xx"), (503, "5xx"), (200, None)]


def test_a_timeout_is_retried_then_transient(serve: Serve) -> None:
    simulation, base_url = serve(FaultRule("timeout", first=1, delay=1.0))
    with client(base_url, timeout=0.3) as api:
        assert api.closure(ID, DAY) == simulation.closure(ID, DAY)
    simulation.set_faults(FaultRule("timeout", delay=1.0))
    started = time.monotonic()
    with client(base_url, timeout=0.2, attempts=2) as api, \
            pytest.raises(TransientError, match="timed out"):
        api.closure(ID, DAY + timedelta(days=-1))
    # Each attempt gave up at the client's timeout, not at the server's answer.
    assert time.monotonic() - started < 1.5


def test_a_truncated_body_is_never_a_closure(serve: Serve) -> None:
    simulation, base_url = serve(FaultRule("truncated", first=1))
    with client(base_url) as api:
        assert api.closure(ID, DAY) == simulation.closure(ID, DAY)
    assert statuses(simulation) == [(200, "truncated"), (200, None)]
    simulation.set_faults(FaultRule("truncated"))
    with client(base_url, attempts=2) as api, pytest.raises(TransientError, match="connection"):
        api.closure(ID, DAY)


def test_a_body_that_is_not_json_is_never_a_closure(serve: Serve) -> None:
    _, base_url = serve(FaultRule("garbled"))
    with client(base_url, attempts=2) as api, pytest.raises(TransientError, match="not JSON"):
        api.closure(ID, DAY)


def test_the_rate_limiter_spaces_requests_of_every_thread(serve: Serve) -> None:
    simulation, base_url = serve()
    bucket = RateLimiter(1, 0.05)  # 20 a second, no burst
    with client(base_url, limiter=bucket) as api:
        api.closure(ID, DAY)  # warm: the first closure is generated on demand
        simulation.requests.clear()
        threads = [threading.Thread(target=lambda: [api.closure(ID, DAY) for _ in range(3)])
                   for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    arrivals = sorted(r.arrived for r in simulation.requests)
    assert len(arrivals) == 9
    # 9 requests at 20 a second with no burst: at least 8 intervals of 50 ms.
    assert arrivals[-1] - arrivals[0] >= 8 / 20 - 0.05


def test_settings_come_from_the_environment_and_hide_the_token() -> None:
    settings = ApiSettings.from_environment(
        {API_URL_ENV: "https://api.example/", API_TOKEN_ENV: TOKEN})
    assert settings.base_url == "https://api.example"
    assert TOKEN not in repr(settings)
    with pytest.raises(ConfigurationError, match=API_URL_ENV):
        ApiSettings.from_environment({API_TOKEN_ENV: TOKEN})
    with pytest.raises(ConfigurationError, match=API_URL_ENV):
        ApiSettings.from_environment({API_URL_ENV: "ftp://x", API_TOKEN_ENV: TOKEN})
    with pytest.raises(ConfigurationError, match=API_TOKEN_ENV):
        ApiSettings.from_environment({API_URL_ENV: "https://api.example"})


def test_the_token_is_never_logged(serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    _, base_url = serve(FaultRule("5xx", first=1))
    with caplog.at_level(logging.DEBUG), client(base_url) as api:
        api.closure(ID, DAY)
    assert "trying again" in caplog.text
    assert TOKEN not in caplog.text


# --- PullSource ----------------------------------------------------------------------------


@pytest.fixture
def ledger(tmp_path: Path, migrated_sqlite: Path) -> Iterator[Engine]:
    shutil.copyfile(migrated_sqlite, tmp_path / "ledger.db")
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield engine
    engine.dispose()


def activate(engine: Engine, client_id: str = "chez-pull") -> str:
    with session_scope(engine) as session:
        record = clients.activate_client(session, client_id, name="Chez Pull",
                                         activated_on=date(2026, 11, 1), now=NOW)
        connections.set_source(session, client_id, "pull")
    return record.integration_id


def stored_count(engine: Engine) -> int:
    with session_scope(engine) as session:
        return session.scalar(select(func.count()).select_from(ClosureRow)) or 0


def test_pull_source_stores_the_raw_bytes_once(serve: Serve, ledger: Engine) -> None:
    integration_id = activate(ledger)
    simulation, base_url = serve()
    served = simulation.closure(integration_id, DAY)
    with client(base_url) as api:
        source = PullSource(ledger, api, clock=lambda: NOW)
        first = source.fetch("chez-pull", DAY)
        again = source.fetch("chez-pull", DAY)
    assert first is not None
    assert again is not None
    assert first.raw == served
    assert again.closure_id == first.closure_id
    assert stored_count(ledger) == 1
    assert InboxSource(ledger).fetch("chez-pull", DAY) == first


def test_pull_source_falls_back_to_the_inbox(serve: Serve, ledger: Engine) -> None:
    integration_id = activate(ledger)
    _, base_url = serve(FaultRule("missing"))
    with client(base_url) as api:
        source = PullSource(ledger, api, clock=lambda: NOW)
        assert source.fetch("chez-pull", DAY) is None
        pushed = dumps(generate_closure(
            integration_id=integration_id, establishment_id="e", establishment_name="Chez Pull",
            business_date=DAY, number=1, perpetual_before=Decimal(0)))
        service.receive(ledger, pushed, "pushed by hand", now=NOW)
        fetched = source.fetch("chez-pull", DAY)
    assert fetched is not None
    assert fetched.raw == pushed


def test_pull_source_transient_failure_stores_nothing(serve: Serve, ledger: Engine) -> None:
    activate(ledger)
    _, base_url = serve(FaultRule("truncated"))
    with client(base_url, attempts=2) as api, pytest.raises(TransientError):
        PullSource(ledger, api, clock=lambda: NOW).fetch("chez-pull", DAY)
    assert stored_count(ledger) == 0


def test_pull_source_refuses_another_clients_closure(ledger: Engine) -> None:
    activate(ledger)
    stranger = Simulation(SimulatorConfig(venue="shop")).closure("tpo_someone_else", DAY)
    assert stranger is not None

    async def wrong(_request: Request) -> Response:
        return Response(stranger, media_type="application/json")

    running = serve_in_thread(Starlette(routes=[
        Route("/v1/integrations/{integration_id}/closures/{day}", wrong)]))
    try:
        with client(running.base_url) as api, \
                pytest.raises(ClosureRejected, match="another integration identifier"):
            PullSource(ledger, api, clock=lambda: NOW).fetch("chez-pull", DAY)
    finally:
        running.stop()
    assert stored_count(ledger) == 0


def test_source_for_follows_the_clients_setting(ledger: Engine,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    activate(ledger, "chez-pull")
    with session_scope(ledger) as session:
        clients.activate_client(session, "chez-push", name="Chez Push",
                                activated_on=date(2026, 11, 1), now=NOW)
    assert isinstance(source_for(ledger, "chez-push"), InboxSource)
    monkeypatch.delenv(API_URL_ENV, raising=False)
    monkeypatch.setenv(API_TOKEN_ENV, TOKEN)
    with pytest.raises(ConfigurationError, match=API_URL_ENV):
        source_for(ledger, "chez-pull")
    monkeypatch.setenv(API_URL_ENV, "http://127.0.0.1:9")
    source = source_for(ledger, "chez-pull")
    assert isinstance(source, PullSource)
    assert source.api.settings.base_url == "http://127.0.0.1:9"

"""The push receiver over real HTTP on 127.0.0.1, a SQLite ledger behind it.

Only signed pushes of a known identifier are stored, byte for byte and once; every refusal is a
JSON answer with the rule broken, and nothing is stored; no secret or body reaches the logs.
The connection commands (set-source, push-secret, simulator push) run through the CLI.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, func, select

from toporder_sync import signing
from toporder_sync.cli import main
from toporder_sync.ledger import connections, repository
from toporder_sync.ledger.db import (
    DATABASE_URL_ENV,
    get_engine,
    session_scope,
)
from toporder_sync.ledger.tables import ClosureRow
from toporder_sync.receiver import create_app
from toporder_sync.simulator_server import (
    Simulation,
    SimulatorConfig,
    message_id,
    push,
    serve_in_thread,
)
from toporder_sync.toporder_api import INTEGRATION_HEADER

NOW = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
DAY = date(2026, 11, 27)
SIMULATION = Simulation(SimulatorConfig(start=date(2026, 11, 26), venue="shop"),
                        clock=lambda: NOW)
HTTP = httpx.Client(timeout=5)


@dataclass(frozen=True, slots=True)
class Receiver:
    url: str
    engine: Engine
    integration_id: str
    secret: str

    def closure(self, day: date = DAY, integration_id: str | None = None) -> bytes:
        raw = SIMULATION.closure(integration_id or self.integration_id, day)
        assert raw is not None
        return raw

    def post(self, raw: bytes, *, secret: str | None = None, integration_id: str | None = None,
             now: datetime = NOW, headers: dict[str, str] | None = None) -> httpx.Response:
        signed = signing.sign(secret or self.secret, message_id(raw), raw, now=now)
        return HTTP.post(f"{self.url}/v1/closures", content=raw, headers={
            **signed, INTEGRATION_HEADER: integration_id or self.integration_id,
            **(headers or {})})

    def stored(self) -> list[bytes]:
        with session_scope(self.engine) as session:
            return list(session.scalars(select(ClosureRow.raw).order_by(ClosureRow.id)))


@pytest.fixture
def database(tmp_path: Path, migrated_sqlite: Path) -> str:
    shutil.copyfile(migrated_sqlite, tmp_path / "ledger.db")
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def receiver(database: str) -> Iterator[Receiver]:
    engine = get_engine(database)
    with session_scope(engine) as session:
        client = repository.activate_client(session, "chez-push", name="Chez Push",
                                            activated_on=date(2026, 11, 26), now=NOW)
        secret = connections.issue_push_secret(session, "chez-push").secret
    running = serve_in_thread(create_app(engine, clock=lambda: NOW, max_body_bytes=200_000))
    yield Receiver(running.base_url, engine, client.integration_id, secret)
    running.stop()


def test_a_new_closure_is_stored_exactly_and_a_resend_is_recognised(
        receiver: Receiver) -> None:
    raw = receiver.closure()
    first = receiver.post(raw)
    assert first.status_code == 201
    assert first.json()["created"] is True
    assert first.json()["business_date"] == DAY.isoformat()
    again = receiver.post(raw)
    assert again.status_code == 200
    assert again.json() == {**first.json(), "created": False}
    assert receiver.stored() == [raw]


def test_bad_or_missing_signature_and_unknown_identifier_look_the_same(
        receiver: Receiver) -> None:
    raw = receiver.closure()
    bad_signature = receiver.post(raw, secret=signing.new_secret())
    unknown_id = receiver.post(raw, integration_id="tpo_nobody")
    unsigned = HTTP.post(f"{receiver.url}/v1/closures", content=raw,
                         headers={INTEGRATION_HEADER: receiver.integration_id})
    no_id = HTTP.post(f"{receiver.url}/v1/closures", content=raw,
                      headers=signing.sign(receiver.secret, "m", raw, now=NOW))
    tampered = receiver.post(raw, headers=signing.sign(receiver.secret, "m", raw + b" ",
                                                       now=NOW))
    answers = [bad_signature, unknown_id, unsigned, no_id, tampered]
    assert {a.status_code for a in answers} == {401}
    assert len({a.content for a in answers}) == 1
    assert bad_signature.json()["error"] == "unauthenticated"
    assert receiver.stored() == []


def test_a_replay_outside_the_window_is_refused(receiver: Receiver) -> None:
    raw = receiver.closure()
    assert receiver.post(raw, now=NOW - timedelta(seconds=301)).status_code == 401
    assert receiver.post(raw, now=NOW + timedelta(seconds=301)).status_code == 401
    assert receiver.post(raw, now=NOW - timedelta(seconds=290)).status_code == 201


def test_a_client_without_push_secret_cannot_push(receiver: Receiver) -> None:
    with session_scope(receiver.engine) as session:
        other = repository.activate_client(session, "sans-secret", name="Sans Secret",
                                           activated_on=date(2026, 11, 1), now=NOW)
    raw = receiver.closure(integration_id=other.integration_id)
    assert receiver.post(raw, integration_id=other.integration_id).status_code == 401


def test_too_big_is_413_before_anything_else(receiver: Receiver) -> None:
    raw = b'{"padding": "' + b"x" * 200_001 + b'"}'
    answer = receiver.post(raw, secret=signing.new_secret())
    assert answer.status_code == 413
    assert answer.json()["error"] == "too_large"


@pytest.mark.parametrize(("body", "rule"), [
    (b"{not json", "json"),
    (b"\xef\xbb\xbf{}", "encoding"),
    (b'{"integration_id": "x", "integration_id": "y"}', "json"),
    (b'{"schema": "toporder.closure/v1"}', "routing"),
])
def test_unreadable_closures_are_400_with_findings(receiver: Receiver, body: bytes,
                                                   rule: str) -> None:
    answer = receiver.post(body)
    assert answer.status_code == 400
    assert answer.json()["error"] == rule
    assert answer.json()["findings"][0]["category"] == "pos"
    assert receiver.stored() == []


def test_a_closure_of_another_identifier_is_403(receiver: Receiver) -> None:
    raw = receiver.closure(integration_id="tpo_someone_else")
    answer = receiver.post(raw)
    assert answer.status_code == 403
    assert answer.json()["error"] == "integration_mismatch"
    assert receiver.stored() == []


def test_a_day_before_activation_is_422(receiver: Receiver) -> None:
    early = Simulation(SimulatorConfig(start=date(2026, 11, 20), venue="shop")).closure(
        receiver.integration_id, date(2026, 11, 25))
    assert early is not None
    answer = receiver.post(early)
    assert answer.status_code == 422
    assert answer.json()["error"] == "refused"
    assert receiver.stored() == []


def test_health(receiver: Receiver) -> None:
    assert HTTP.get(f"{receiver.url}/health").json() == {"status": "ok"}


def test_nothing_secret_is_logged(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    raw = receiver.closure()
    with caplog.at_level(logging.DEBUG):
        receiver.post(raw)
        receiver.post(raw, secret=signing.new_secret())
        receiver.post(b"{not json")
    assert "closure #1" in caplog.text
    assert receiver.secret not in caplog.text
    assert receiver.secret.removeprefix("whsec_") not in caplog.text
    assert json.loads(raw)["establishment"]["name"] not in caplog.text


def test_the_simulator_pushes_signed_closures(receiver: Receiver) -> None:
    days = [DAY - timedelta(days=1), DAY]
    results = push(SIMULATION, receiver.url, receiver.integration_id, receiver.secret, days)
    assert [r.status for r in results] == [201, 201]
    again = push(SIMULATION, receiver.url, receiver.integration_id, receiver.secret, days)
    assert [(r.status, r.answer["created"]) for r in again] == [(200, False), (200, False)]
    assert receiver.stored() == [receiver.closure(d) for d in days]


# --- the command line -----------------------------------------------------------------------


def test_set_source_and_push_secret_commands(receiver: Receiver, database: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATABASE_URL_ENV, database)
    runner = CliRunner()
    shown = runner.invoke(main, ["clients", "push-secret", "chez-push"])
    assert shown.exit_code == 0, shown.output
    assert shown.output.splitlines()[-1] == receiver.secret
    rotated = runner.invoke(main, ["clients", "push-secret", "chez-push", "--rotate"])
    new_secret = rotated.output.splitlines()[-1]
    assert new_secret.startswith("whsec_")
    assert new_secret != receiver.secret
    # The old secret stops working at once; the new one works.
    raw = receiver.closure()
    assert receiver.post(raw).status_code == 401
    assert receiver.post(raw, secret=new_secret).status_code == 201

    assert runner.invoke(main, ["clients", "set-source", "chez-push", "pull"]).exit_code == 0
    with session_scope(receiver.engine) as session:
        assert connections.connection(session, "chez-push").source == "pull"
    assert runner.invoke(main, ["clients", "set-source", "chez-push", "fax"]).exit_code == 2
    assert runner.invoke(main, ["clients", "set-source", "nobody", "push"]).exit_code == 3


def test_simulator_push_command(receiver: Receiver) -> None:
    # The command signs with the time of day: a receiver on the real clock checks it.
    running = serve_in_thread(create_app(receiver.engine))
    try:
        result = CliRunner().invoke(main, [
            "simulator", "--start", "2026-11-26", "--venue", "shop", "push",
            receiver.integration_id, "--receiver", running.base_url, "--secret", receiver.secret,
            "--from", "2026-11-26", "--to", "2026-11-26"])
    finally:
        running.stop()
    assert result.exit_code == 0, result.output
    assert "HTTP 201" in result.output
    with session_scope(receiver.engine) as session:
        assert session.scalar(select(func.count()).select_from(ClosureRow)) == 1

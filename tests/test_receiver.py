"""The push receiver over real HTTP on 127.0.0.1, a SQLite ledger behind it.

Only signed pushes of a known identifier are stored, byte for byte and once; every refusal is a
JSON answer with the rule broken, and nothing is stored; no secret or body reaches the logs.
The HTTP edges are strict: a body not declared ``application/json`` is 415, a malformed
Standard Webhooks header the same 401 as a bad signature (never a 500), a ``webhook-id`` reused
with another body 409, on SQLite and PostgreSQL alike, racing requests included.
The connection commands (set-source, push-secret, simulator push) run through the CLI.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, func, select

from toporder_sync import service, signing
from toporder_sync.cli import main
from toporder_sync.ledger import clients, connections, inbox, webhooks
from toporder_sync.ledger.db import (
    DATABASE_URL_ENV,
    get_engine,
    session_scope,
)
from toporder_sync.ledger.tables import ClosureRow, WebhookMessageRow
from toporder_sync.receiver import create_app
from toporder_sync.simulator.server import (
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
JSON = {"content-type": "application/json"}


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
             now: datetime = NOW, message: str | None = None,
             headers: Mapping[str, str | bytes] | None = None) -> httpx.Response:
        """``raw`` pushed as ``application/json``, signed as message ``message`` (default: the
        simulator's id of the body); ``headers`` replace or add to those (bytes: sent as is)."""
        signed = signing.sign(secret or self.secret, message or message_id(raw), raw, now=now)
        sent: dict[str, str | bytes] = {
            **JSON, **signed, INTEGRATION_HEADER: integration_id or self.integration_id,
            **(headers or {})}
        return HTTP.post(f"{self.url}/v1/closures", content=raw, headers=[
            (name.encode(), value if isinstance(value, bytes) else value.encode())
            for name, value in sent.items()])

    def stored(self) -> list[bytes]:
        with session_scope(self.engine) as session:
            return list(session.scalars(select(ClosureRow.raw).order_by(ClosureRow.id)))

    def messages(self) -> list[str]:
        """The ``webhook-id`` recorded, in order."""
        with session_scope(self.engine) as session:
            return list(session.scalars(select(WebhookMessageRow.webhook_id)
                                        .order_by(WebhookMessageRow.received_at,
                                                  WebhookMessageRow.webhook_id)))


@pytest.fixture
def database(tmp_path: Path, migrated_sqlite: Path) -> str:
    shutil.copyfile(migrated_sqlite, tmp_path / "ledger.db")
    return f"sqlite:///{tmp_path / 'ledger.db'}"


def _serve(engine: Engine) -> Iterator[Receiver]:
    with session_scope(engine) as session:
        client = clients.activate_client(session, "chez-push", name="Chez Push",
                                         activated_on=date(2026, 11, 26), now=NOW)
        secret = connections.issue_push_secret(session, "chez-push").secret
    running = serve_in_thread(create_app(engine, clock=lambda: NOW, max_body_bytes=200_000))
    yield Receiver(running.base_url, engine, client.integration_id, secret)
    running.stop()


@pytest.fixture
def receiver(database: str) -> Iterator[Receiver]:
    yield from _serve(get_engine(database))


@pytest.fixture
def receiver_on_both(engine: Engine) -> Iterator[Receiver]:
    """A receiver on a ledger of each backend, SQLite and PostgreSQL."""
    yield from _serve(engine)


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
                         headers={**JSON, INTEGRATION_HEADER: receiver.integration_id})
    no_id = HTTP.post(f"{receiver.url}/v1/closures", content=raw,
                      headers={**JSON, **signing.sign(receiver.secret, "m", raw, now=NOW)})
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
        other = clients.activate_client(session, "sans-secret", name="Sans Secret",
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


# --- strict edges: media type, header formats, reused message ids ---------------------------


@pytest.mark.parametrize("content_type", [
    None, "text/plain", "application/x-www-form-urlencoded", "application/jsonl",
    "application/problem+json", "application/json; charset=iso-8859-1",
    "application/json; charset", "application/json, text/plain", "*/*",
])
def test_a_body_not_declared_json_is_415_before_anything_else(
        receiver: Receiver, content_type: str | None) -> None:
    raw = receiver.closure()
    headers = {**signing.sign(receiver.secret, message_id(raw), raw, now=NOW),
               INTEGRATION_HEADER: receiver.integration_id}
    if content_type is not None:
        headers["content-type"] = content_type
    answer = HTTP.post(f"{receiver.url}/v1/closures", content=raw, headers=headers)
    assert answer.status_code == 415
    assert answer.json()["error"] == "unsupported_media_type"
    assert set(answer.json()) == {"error", "message"}
    # Before authentication: an unsigned body of another type learns the same and no more.
    unsigned = HTTP.post(f"{receiver.url}/v1/closures", content=raw,
                         headers={"content-type": content_type or ""})
    assert (unsigned.status_code, unsigned.content) == (415, answer.content)
    assert receiver.stored() == []
    assert receiver.messages() == []


@pytest.mark.parametrize("content_type", [
    "application/json; charset=utf-8", "Application/JSON", 'application/json;charset="UTF-8"',
    "application/json ; charset=UTF-8", "application/json;",
])
def test_json_with_parameters_or_another_case_is_accepted(receiver: Receiver,
                                                          content_type: str) -> None:
    raw = receiver.closure()
    refused = receiver.post(raw, headers={"content-type": "text/plain; charset=utf-8"})
    assert refused.status_code == 415
    assert receiver.post(raw, headers={"content-type": content_type}).status_code == 201


STAMP = str(int(NOW.timestamp()))


@pytest.mark.parametrize(("name", "value"), [
    (signing.TIMESTAMP_HEADER, "9" * 400),
    (signing.TIMESTAMP_HEADER, "+" + STAMP),
    (signing.TIMESTAMP_HEADER, f"{STAMP[:1]}_{STAMP[1:4]}_{STAMP[4:7]}_{STAMP[7:]}"),
    (signing.TIMESTAMP_HEADER, "0" + STAMP),
    (signing.ID_HEADER, "msg with spaces"),
    (signing.ID_HEADER, "m" * 129),
    (signing.ID_HEADER, b"msg_\xe9t\xe9"),
    (signing.SIGNATURE_HEADER, b"v1,\xe9 "),
    (signing.SIGNATURE_HEADER, "v1,AAAA " * 200),
])
def test_a_malformed_signature_header_is_the_same_401_never_a_500(
        receiver: Receiver, name: str, value: str | bytes) -> None:
    # Leading and trailing spaces (" 123 ") never reach the application: HTTP strips them
    # (test_signing checks ``verify`` refuses them all the same).
    raw = receiver.closure()
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    # Signed over the very header given, where it is the id or the timestamp, so that only its
    # form is wrong (a timestamp past the year 9999 has no date to sign: signed at NOW); a
    # signature header keeps the valid signature after the malformed part.
    message = text if name == signing.ID_HEADER else message_id(raw)
    stamp = (int(text) if name == signing.TIMESTAMP_HEADER and text.isdigit()
             and len(text) <= signing.MAX_TIMESTAMP_DIGITS else None)
    signed = signing.sign(receiver.secret, message, raw, now=NOW)
    if name == signing.TIMESTAMP_HEADER:
        signed[signing.SIGNATURE_HEADER] = signing.signature(
            receiver.secret, message, stamp if stamp is not None else int(NOW.timestamp()), raw)
    extra: dict[str, str | bytes] = {name: value}
    if name == signing.SIGNATURE_HEADER:
        extra[name] = (value if isinstance(value, bytes) else value.encode()) \
            + signed[signing.SIGNATURE_HEADER].encode()
    answer = receiver.post(raw, headers={**signed, **extra})
    reference = receiver.post(raw, secret=signing.new_secret())
    assert answer.status_code == 401, answer.text
    assert answer.content == reference.content
    assert receiver.stored() == []


def test_a_reused_webhook_id_with_another_body_is_409_and_an_identical_replay_200(
        receiver: Receiver) -> None:
    raw, other = receiver.closure(), receiver.closure(DAY - timedelta(days=1))
    first = receiver.post(raw, message="msg_1")
    assert first.status_code == 201
    reused = receiver.post(other, message="msg_1")
    assert reused.status_code == 409
    assert reused.json()["error"] == "webhook_id_reused"
    assert set(reused.json()) == {"error", "message"}
    assert receiver.stored() == [raw]
    assert receiver.messages() == ["msg_1"]
    replay = receiver.post(raw, message="msg_1")
    assert replay.status_code == 200
    assert replay.json() == {**first.json(), "created": False}
    # The same bytes under a new id are a resend too; the other body under its own id is new.
    assert receiver.post(raw, message="msg_2").status_code == 200
    assert receiver.post(other, message="msg_3").status_code == 201
    assert receiver.stored() == [raw, other]
    assert receiver.messages() == ["msg_1", "msg_2", "msg_3"]


def test_a_refused_push_records_no_webhook_id(receiver: Receiver) -> None:
    early = Simulation(SimulatorConfig(start=date(2026, 11, 20), venue="shop")).closure(
        receiver.integration_id, date(2026, 11, 25))
    assert early is not None
    assert receiver.post(early, message="msg_1").status_code == 422
    assert receiver.post(b"{not json", message="msg_1").status_code == 400
    assert receiver.messages() == []
    assert receiver.post(receiver.closure(), message="msg_1").status_code == 201
    assert receiver.messages() == ["msg_1"]


def test_racing_pushes_of_one_webhook_id_store_exactly_one_body(
        receiver_on_both: Receiver) -> None:
    receiver = receiver_on_both
    raw = receiver.closure()
    bodies = [raw + b" " * n for n in range(4)]  # four bodies, all valid, all different
    barrier = threading.Barrier(len(bodies))
    answers: dict[int, httpx.Response] = {}

    def push_one(n: int) -> None:
        with httpx.Client(timeout=30) as client:
            signed = signing.sign(receiver.secret, "msg_race", bodies[n], now=NOW)
            barrier.wait()
            answers[n] = client.post(f"{receiver.url}/v1/closures", content=bodies[n],
                                     headers={**JSON, **signed,
                                              INTEGRATION_HEADER: receiver.integration_id})

    threads = [threading.Thread(target=push_one, args=(n,)) for n in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    statuses = sorted(a.status_code for a in answers.values())
    assert statuses == [201, 409, 409, 409], [a.text for a in answers.values()]
    winner = next(n for n, a in answers.items() if a.status_code == 201)
    assert receiver.stored() == [bodies[winner]]
    assert receiver.messages() == ["msg_race"]


@pytest.mark.parametrize("first_commits", [True, False])
def test_a_webhook_id_held_by_an_open_transaction_waits_for_its_outcome(
        receiver_on_both: Receiver, first_commits: bool) -> None:
    """The second push of an id waits for the first one's transaction, then is refused if it
    committed, stored if it rolled back: the primary key decides, not a look before it."""
    receiver = receiver_on_both
    raw, other = receiver.closure(), receiver.closure(DAY - timedelta(days=1))
    outcome: list[service.Received | Exception] = []

    def second() -> None:
        try:
            outcome.append(service.receive(receiver.engine, other, "second", now=NOW,
                                           message_id="msg_1"))
        except Exception as exc:  # the test asserts which it was
            outcome.append(exc)

    thread = threading.Thread(target=second)
    try:
        with session_scope(receiver.engine) as session:
            webhooks.record_message(session, "chez-push", "msg_1",
                                    sha256=hashlib.sha256(raw).hexdigest(), now=NOW)
            inbox.store_closure(session, "chez-push", business_date=DAY, raw=raw,
                                closure_number=None, establishment_id=None,
                                perpetual_total=None, now=NOW)
            thread.start()
            thread.join(0.5)
            assert thread.is_alive(), "the second push did not wait for the first"
            if not first_commits:
                raise _RolledBack
    except _RolledBack:
        pass
    thread.join(30)
    assert not thread.is_alive()
    if first_commits:
        assert isinstance(outcome[0], webhooks.WebhookIdReused), outcome
        assert receiver.stored() == [raw]
    else:
        assert isinstance(outcome[0], service.Received), outcome
        assert outcome[0].created
        assert receiver.stored() == [other]
    assert receiver.messages() == ["msg_1"]


class _RolledBack(Exception):
    """Leaves a transaction, rolling it back."""


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

"""Class 6, security: routing by identifier, the push receiver's checks, FEC labels, secrets.

* A closure reaches only the client whose integration identifier it carries: ``receive``
  routes by it, an unknown one is refused with nothing stored, the pull API serving another
  client's closure is flagged with nothing stored, a closure carrying another identifier in
  a client's inbox is flagged, never posted.
* The push receiver, served on 127.0.0.1: a bad signature, a stale or future timestamp, a
  replayed request with another body, an unknown identifier, a header naming another client
  than the body are refused with nothing stored; an identical replay stores nothing twice.
* FEC: labels starting with ``= + - @`` and carrying tabs or line breaks stay one field each,
  every line keeps its 18 fields. There is no CSV export (``core/fec.py`` writes the FEC
  only), so there is nothing to neutralise for a spreadsheet; the test says so by checking
  that no module writes CSV.
* Canary secrets (API token, push secret, webhook secret) never appear in DEBUG logs, in the
  artifacts' markdown, in the flow's parameters, nor in the notifications sent.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, func, select

from reliability import invariants, support, tally
from toporder_sync import notifications, outbox, report, signing
from toporder_sync.core import fec
from toporder_sync.core.errors import RefusedError
from toporder_sync.core.model import Entry, EntryLine
from toporder_sync.day import client_record
from toporder_sync.ledger import clients, connections
from toporder_sync.ledger.db import make_engine, session_scope, upgrade
from toporder_sync.ledger.inbox import store_closure
from toporder_sync.ledger.tables import ClosureRow, EntryRow
from toporder_sync.rate_limit import RateLimiter
from toporder_sync.receiver import create_app as receiver_app
from toporder_sync.retrying import RetryPolicy
from toporder_sync.simulator.server import (
    Simulation,
    SimulatorConfig,
    create_app,
    serve_in_thread,
)
from toporder_sync.sources import PullSource
from toporder_sync.toporder_api import INTEGRATION_HEADER, ApiSettings, ToporderApi

API_TOKEN = "canary-api-token-7c2d"  # noqa: S105 - a canary, checked never to leak
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'security.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


def _closures(engine: Engine) -> int:
    with session_scope(engine) as session:
        return session.scalar(select(func.count()).select_from(ClosureRow)) or 0


def _entries(engine: Engine, client_id: str) -> int:
    with session_scope(engine) as session:
        return session.scalar(select(func.count()).select_from(EntryRow)
                              .where(EntryRow.client_id == client_id)) or 0


class _WrongClosureApi:
    """A Toporder API that serves ``raw`` whatever it is asked for."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def closure(self, integration_id: str, business_date: date) -> bytes | None:
        return self.raw


def test_a_closure_reaches_only_the_client_it_names(ledger: Engine) -> None:
    alice, bob = support.activate(ledger, "alice"), support.activate(ledger, "bob")
    day = support.DAYS[3]
    raw = support.closure(bob, day)
    assert support.receive(ledger, raw).client_id == "bob"
    tally.tried("security", "routing: receive files under the named client")
    stranger = raw.replace(bob.integration_id.encode(), b"tpo_nobody")
    before = _closures(ledger)
    with pytest.raises(RefusedError):
        support.receive(ledger, stranger)
    assert _closures(ledger) == before
    tally.tried("security", "routing: unknown identifier refused")
    # The pull API answering Alice's request with Bob's closure: flagged, nothing stored.
    source = PullSource(ledger, _WrongClosureApi(raw), clock=lambda: support.NOW)  # type: ignore[arg-type]
    result = support.run(ledger, alice, day, run_id="wrong-api", source=source)
    assert result.outcome.kind == "flagged" and result.findings[0].field == "integration_id"
    assert _closures(ledger) == before and _entries(ledger, "alice") == 0
    tally.tried("security", "routing: API serving another client's closure")
    # A closure with Bob's identifier in Alice's inbox (a corrupted inbox): never posted.
    with session_scope(ledger) as session:
        store_closure(session, "alice", business_date=day, raw=raw, closure_number=1,
                      establishment_id="est-1", perpetual_total=None, now=support.NOW)
    result = support.run(ledger, alice, day, run_id="wrong-inbox")
    assert result.outcome.kind == "flagged"
    assert ("integration_id", "integration_id") in {(f.rule, f.field) for f in result.findings}
    assert _entries(ledger, "alice") == 0
    tally.tried("security", "routing: another client's closure in the inbox")
    assert support.run(ledger, bob, day, run_id="bob").outcome.kind == "posted"
    found = tally.record(invariants.check(ledger), "security routing")
    assert not found, found.describe()


def test_the_push_receiver_refuses_what_is_not_signed_fresh_and_its_own(
        ledger: Engine) -> None:
    alice, bob = support.activate(ledger, "alice"), support.activate(ledger, "bob")
    with session_scope(ledger) as session:
        secret = connections.issue_push_secret(session, "alice").secret
        bob_secret = connections.issue_push_secret(session, "bob").secret
    server = serve_in_thread(receiver_app(ledger, clock=lambda: support.NOW))
    raw = support.closure(alice, support.DAYS[0])
    other = support.closure(alice, support.DAYS[1])

    def post(body: bytes, headers: dict[str, str], integration_id: str = alice.integration_id
             ) -> httpx.Response:
        return httpx.post(f"{server.base_url}/v1/closures", content=body, timeout=10,
                          headers={**headers, INTEGRATION_HEADER: integration_id,
                                   "content-type": "application/json"})

    signed = signing.sign(secret, "msg_1", raw, now=support.NOW)
    attacks = {
        "bad signature": (raw, signing.sign(bob_secret, "msg_1", raw, now=support.NOW),
                          alice.integration_id, 401),
        "stale timestamp": (raw, signing.sign(secret, "msg_1", raw,
                                              now=support.NOW - timedelta(minutes=6)),
                            alice.integration_id, 401),
        "future timestamp": (raw, signing.sign(secret, "msg_1", raw,
                                               now=support.NOW + timedelta(minutes=6)),
                             alice.integration_id, 401),
        "replayed headers, other body": (other, signed, alice.integration_id, 401),
        "unsigned": (raw, {}, alice.integration_id, 401),
        "unknown identifier": (raw, signed, "tpo_nobody", 401),
        "header names another client": (raw, signing.sign(bob_secret, "msg_1", raw,
                                                          now=support.NOW),
                                        bob.integration_id, 403),
    }
    try:
        for name, (body, headers, integration_id, status) in attacks.items():
            answer = post(body, headers, integration_id)
            tally.tried("security", f"receiver: {name}")
            assert answer.status_code == status, (name, answer.status_code, answer.text)
            assert _closures(ledger) == 0, f"{name}: something was stored"
            assert secret not in answer.text and bob_secret not in answer.text
        first = post(raw, signed)
        replay = post(raw, signed)
        tally.tried("security", "receiver: identical replay")
        assert (first.status_code, replay.status_code) == (201, 200)
        assert first.json()["closure_id"] == replay.json()["closure_id"]
        assert replay.json()["created"] is False and _closures(ledger) == 1
    finally:
        server.stop()


def test_fec_labels_that_look_like_formulas_stay_one_aligned_field() -> None:
    nasty = ("=HYPERLINK(\"http://x\")", "+1+1", "-2-2", "@SUM(A1)", "=cmd|' /C calc'!A0",
             "tab\tin label", "line\r\nbreak", "\u200b=zero width")
    lines = tuple(EntryLine("511500" if n % 2 == 0 else "706100", label, label,
                            Decimal("10.00") if n % 2 == 0 else Decimal("0.00"),
                            Decimal("0.00") if n % 2 == 0 else Decimal("10.00"))
                  for n, label in enumerate(nasty))
    entry = Entry("VT", "=Journal", date(2026, 11, 27), "@Z1", "=label", lines)
    text = fec.render_fec([fec.FecEntry(1, entry, date(2026, 11, 28))])
    rows = text.split("\r\n")
    assert rows[-1] == ""
    for row in rows[:-1]:
        tally.tried("security", "FEC: formula-like or multi-line label")
        assert row.count("\t") == 17, row
    for label in nasty[:4]:
        assert f"\t{label}\t" in text, "the FEC keeps such labels whole, in their own field"
    # The one CSV written is what `clients import` issues: client ids (a lowercase letter or a
    # digit first), integration identifiers and secrets, none of which can start a formula.
    writers = [path.relative_to(ROOT).as_posix()
               for path in (ROOT / "toporder_sync").rglob("*.py")
               if "csv.writer" in path.read_text()]
    assert writers == ["toporder_sync/cli.py"], f"a CSV export exists: neutralise its labels: " \
        f"{writers}"
    tally.tried("security", "CSV of issued identifiers: no formula-like first character")
    issued = ("a-client", clients.new_integration_id(), signing.new_secret())
    assert clients.CLIENT_ID_PATTERN.pattern.startswith("^[a-z0-9]")
    assert all(cell[0] not in "=+-@\t\r" for cell in issued), issued


def test_canary_secrets_never_reach_logs_artifacts_or_notifications(
        ledger: Engine, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = support.activate(ledger, "canary")
    sim = Simulation(SimulatorConfig(seed=1, token=API_TOKEN, start=support.ACTIVATED,
                                     venue="shop"), clock=lambda: support.NOW)
    server = serve_in_thread(create_app(sim))
    api = ToporderApi(ApiSettings(server.base_url, API_TOKEN, timeout=5),
                      policy=RetryPolicy(attempts=2, backoff=0.01),
                      limiter=RateLimiter.per_second(1000))
    try:
        with session_scope(ledger) as session:
            push_secret = connections.issue_push_secret(session, "canary").secret
            webhook_secret = notifications.set_webhook(
                session, "canary", f"{server.base_url}/webhooks/{client.integration_id}",
                now=support.NOW)
        assert webhook_secret is not None
        sim.set_webhook_secret(client.integration_id, webhook_secret)
        canaries = {"API token": API_TOKEN, "push secret": push_secret,
                    "webhook secret": webhook_secret,
                    "webhook key": webhook_secret.removeprefix(signing.SECRET_PREFIX)}
        source = PullSource(ledger, api, clock=lambda: support.NOW)
        posted = support.run(ledger, client, support.DAYS[0], run_id="c1", source=source)
        sim_flagged = Simulation(SimulatorConfig(seed=1, token=API_TOKEN,
                                                 start=support.ACTIVATED, venue="shop"))
        assert sim_flagged is not None
        raw = support.closure(client_record(ledger, "canary"), support.DAYS[1],
                              faults=frozenset({"unbalanced"}))
        support.receive(ledger, raw)
        flagged = support.run(ledger, client, support.DAYS[1], run_id="c2")
        assert posted.outcome.kind == "posted" and flagged.outcome.kind == "flagged"
        handler = notifications.WebhookHandler(ledger, clock=lambda: support.NOW)
        try:
            sent = outbox.relay(ledger, {notifications.TOPIC: handler}, now=lambda: support.NOW)
        finally:
            handler.close()
        assert sent.sent == 1, sent
        assert posted.entry is not None and posted.posted is not None
        artifacts = [
            report.entry_markdown(posted.entry, posted.posted.number, posted.findings),
            report.failure_markdown("canary", support.DAYS[1], "POS data error",
                                    flagged.findings, "resend"),
        ]
        # The flow's parameters are the client and the day, nothing else.
        from toporder_sync.flows.daily import post_client_day
        parameters = set(post_client_day.parameters.properties)
        assert parameters == {"client_id", "business_date"}, parameters
        notified = json.dumps([w.payload for w in sim.webhooks.values()])
        assert sim.webhooks, "the flagged day's notification was delivered"
        logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
        for name, canary in canaries.items():
            for where, haystack in (("DEBUG logs", logged), ("artifacts", "".join(artifacts)),
                                    ("notifications", notified)):
                tally.tried("security", f"canary {name} in {where}", counts=None)
                assert canary not in haystack, f"the {name} leaked into {where}"
    finally:
        api.close()
        server.stop()

"""The fake Toporder over real HTTP on 127.0.0.1: deterministic closures, faults chosen by the
seed, bearer auth, and the error-notification endpoint (signatures, dedupe by webhook-id); and
the same simulator playing Toporder for a ledger's fleet (SQLite and PostgreSQL): each client's
territory, its own webhook secret, the relay's notifications delivered, the push secret."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine
from test_outbox import flag_day

from toporder_sync import notifications, outbox, signing
from toporder_sync.cli import main
from toporder_sync.core.errors import ConfigurationError
from toporder_sync.core.model import Territory
from toporder_sync.core.money import parse_amount
from toporder_sync.ledger import clients, connections
from toporder_sync.ledger.db import session_scope
from toporder_sync.receiver import create_app as receiver_app
from toporder_sync.simulator import CARD, RENAMED_CARD, dumps, generate_closure
from toporder_sync.simulator.faults import FaultRule
from toporder_sync.simulator.server import (
    Simulation,
    SimulatorConfig,
    create_app,
    ledger_integrations,
    serve_in_thread,
)

NOW = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
DAY = date(2026, 11, 27)
START = date(2026, 11, 25)
TOKEN = "test-token"  # noqa: S105 (a test value)
WEBHOOK_SECRET = signing.new_secret()

# One client for the module: a new one per request would spend most of the test making TLS
# contexts it never uses.
HTTP = httpx.Client(timeout=5)

Serve = Callable[..., tuple[Simulation, str]]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start a simulator with the given faults; yields (simulation, base URL)."""
    stops: list[Callable[[], None]] = []

    def start(*faults: FaultRule, seed: int = 0, **options: object) -> tuple[Simulation, str]:
        config = SimulatorConfig(seed=seed, faults=faults, start=START, venue="shop",
                                 token=TOKEN, webhook_secret=WEBHOOK_SECRET,
                                 **options)  # type: ignore[arg-type]
        simulation = Simulation(config, clock=lambda: NOW)
        running = serve_in_thread(create_app(simulation))
        stops.append(running.stop)
        return simulation, running.base_url

    yield start
    for stop in stops:
        stop()


def get(base_url: str, integration_id: str, day: date, token: str = TOKEN) -> httpx.Response:
    return HTTP.get(f"{base_url}/v1/integrations/{integration_id}/closures/{day}",
                    headers={"Authorization": f"Bearer {token}"})


def test_closures_are_valid_deterministic_and_continue_day_to_day(serve: Serve) -> None:
    _, base_url = serve()
    days = [START + timedelta(days=n) for n in range(3)]
    bodies = [get(base_url, "tpo_alpha", d).content for d in days]
    assert [get(base_url, "tpo_alpha", d).content for d in reversed(days)] == bodies[::-1]
    assert get(base_url, "tpo_beta", days[0]).content != bodies[0]
    documents = [json.loads(b) for b in bodies]
    # What is served is simulator.closures' closure (whose validity test_simulator checks),
    # numbered from the start and carrying the perpetual total.
    assert bodies[1] == dumps(generate_closure(
        integration_id="tpo_alpha", establishment_id=documents[1]["establishment"]["id"],
        establishment_name=documents[1]["establishment"]["name"], business_date=days[1],
        venue="shop", number=2,
        perpetual_before=parse_amount(documents[0]["closure"]["grand_total"]["perpetual"])))
    assert [d["closure"]["number"] for d in documents] == [1, 2, 3]
    for before, after in itertools.pairwise(documents):
        assert parse_amount(after["closure"]["grand_total"]["perpetual"]) == (
            parse_amount(before["closure"]["grand_total"]["perpetual"])
            + parse_amount(after["closure"]["grand_total"]["period"]))
    # Another server with the same settings serves the same bytes: nothing depends on state.
    _, other = serve()
    assert get(other, "tpo_alpha", days[2]).content == bodies[2]


def test_no_closure_before_the_start_nor_for_a_day_not_over(serve: Serve) -> None:
    _, base_url = serve()
    assert get(base_url, "tpo_alpha", START - timedelta(days=1)).status_code == 404
    assert get(base_url, "tpo_alpha", NOW.date()).status_code == 404
    assert get(base_url, "tpo_alpha", START).status_code == 200


def test_the_api_needs_the_bearer_token(serve: Serve) -> None:
    _, base_url = serve()
    answer = get(base_url, "tpo_alpha", DAY, token="wrong")  # noqa: S106
    assert answer.status_code == 401
    assert answer.json()["error"] == "unauthenticated"


def test_content_faults_break_the_closure_the_same_way_on_every_request(serve: Serve) -> None:
    _, base_url = serve(FaultRule("unbalanced"), FaultRule("renamed_method"))
    raw = get(base_url, "tpo_alpha", DAY).content
    assert get(base_url, "tpo_alpha", DAY).content == raw
    assert json.loads(raw)["integration_id"] == "tpo_alpha"
    methods = {p["method"] for p in json.loads(raw)["payments"]}
    assert RENAMED_CARD in methods
    assert CARD not in methods
    # Identity 4 (money in = money out) no longer holds: the POS must resend.
    document = json.loads(raw)
    paid = sum(parse_amount(p["amount"]) for p in document["payments"])
    due = (sum(parse_amount(s["gross"]) for s in document["sales"])
           - sum(parse_amount(r["gross"]) for r in document.get("refunds", []))
           + parse_amount(document.get("gift_cards", {}).get("sold", "0"))
           + sum(parse_amount(t["amount"]) for t in document.get("tips", [])))
    assert paid < due


def test_http_faults_follow_the_seed(serve: Serve) -> None:
    def struck(seed: int) -> list[int]:
        _simulation, base_url = serve(FaultRule("5xx", rate=0.5), seed=seed)
        return [get(base_url, "tpo_alpha", DAY).status_code for _ in range(12)]

    first = struck(7)
    assert set(first) == {200, 503}
    assert struck(7) == first
    assert struck(8) != first


def test_late_and_missing_closures(serve: Serve) -> None:
    _, base_url = serve(FaultRule("late", requests=2))
    assert [get(base_url, "tpo_alpha", DAY).status_code for _ in range(3)] == [404, 404, 200]
    _, base_url = serve(FaultRule("missing"))
    assert get(base_url, "tpo_alpha", DAY).status_code == 404


def test_429_carries_retry_after(serve: Serve) -> None:
    simulation, base_url = serve(FaultRule("429", first=1, retry_after=7))
    answer = get(base_url, "tpo_alpha", DAY)
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "7"
    assert get(base_url, "tpo_alpha", DAY).status_code == 200
    assert [(r.number, r.status, r.fault) for r in simulation.requests] == [
        (1, 429, "429"), (2, 200, None)]


def notify(base_url: str, integration_id: str, body: bytes, *, message: str = "evt_1",
           secret: str = WEBHOOK_SECRET, now: datetime = NOW) -> httpx.Response:
    headers = signing.sign(secret, message, body, now=now)
    return HTTP.post(f"{base_url}/webhooks/{integration_id}", content=body, headers=headers)


def test_webhooks_are_verified_deduplicated_and_listed(serve: Serve) -> None:
    _simulation, base_url = serve(FaultRule("webhook_5xx", first=1))
    body = b'{"business_date": "2026-11-27", "rules": ["balance"]}'
    assert notify(base_url, "tpo_alpha", body).status_code == 503
    assert notify(base_url, "tpo_alpha", body).json() == {"received": True, "duplicate": False}
    assert notify(base_url, "tpo_alpha", body).json() == {"received": True, "duplicate": True}
    assert notify(base_url, "tpo_alpha", body, secret=signing.new_secret()).status_code == 401
    stale = notify(base_url, "tpo_alpha", body, message="evt_2", now=NOW - timedelta(hours=1))
    assert stale.status_code == 401
    assert [notify(base_url, "tpo_beta", b"{}", message="evt_3").status_code
            for _ in range(2)] == [503, 200]
    listed = HTTP.get(f"{base_url}/webhooks", params={"integration_id": "tpo_alpha"}).json()
    assert [(w["webhook_id"], w["deliveries"], w["payload"]["rules"])
            for w in listed["webhooks"]] == [("evt_1", 2, ["balance"])]
    assert len(HTTP.get(f"{base_url}/webhooks").json()["webhooks"]) == 2
    assert HTTP.get(f"{base_url}/health").json() == {"status": "ok"}


@pytest.mark.parametrize(("text", "expected"), [
    ("429:rate=0.5,retry_after=2", FaultRule("429", rate=0.5, retry_after=2)),
    ("late:requests=3", FaultRule("late", requests=3)),
    ("timeout:first=1,delay=0.5", FaultRule("timeout", first=1, delay=0.5)),
    ("unbalanced", FaultRule("unbalanced")),
])
def test_fault_rules_parse(text: str, expected: FaultRule) -> None:
    assert FaultRule.parse(text) == expected


@pytest.mark.parametrize("text", ["power_cut", "429:rate=2", "429:often=1", "late:requests=x"])
def test_bad_fault_rules_are_refused(text: str) -> None:
    with pytest.raises(ConfigurationError):
        FaultRule.parse(text)


# --- a fleet: the simulator reads the ledger's clients -------------------------------------

# The rates of simulator/till.py's venues by territory (CGI art. 278 ff., 296, 297).
METROPOLE_RATES = {"20", "10", "5.5", "2.1"}
DOM_RATES = {"8.5", "2.1", "1.75", "1.05"}


@pytest.fixture
def fleet(engine: Engine) -> dict[str, str]:
    """Two clients: ``bistro`` in metropolitan France, ``epicerie`` in Martinique (DOM);
    client -> integration identifier."""
    ids = {}
    with session_scope(engine) as session:
        for client_id, territory, timezone in (
                ("bistro", Territory.METROPOLE, "Europe/Paris"),
                ("epicerie", Territory.DOM, "America/Martinique")):
            ids[client_id] = clients.activate_client(
                session, client_id, name=client_id.title(), activated_on=START,
                territory=territory, timezone=timezone, now=NOW).integration_id
    return ids


@pytest.fixture
def toporder(engine: Engine, fleet: dict[str, str]) -> Iterator[tuple[Simulation, str]]:
    """The simulator playing Toporder for the fleet's ledger; (simulation, base URL)."""
    simulation = Simulation(SimulatorConfig(start=START, venue="shop", token=TOKEN),
                            clock=lambda: NOW, integrations=ledger_integrations(engine))
    running = serve_in_thread(create_app(simulation))
    yield simulation, running.base_url
    running.stop()


def set_webhooks(engine: Engine, base_url: str, fleet: dict[str, str]) -> dict[str, str]:
    """``clients set-webhook`` for each client, to the simulator; client -> its secret."""
    secrets = {}
    with session_scope(engine) as session:
        for client_id, integration in fleet.items():
            secrets[client_id] = notifications.set_webhook(
                session, client_id, f"{base_url}/webhooks/{integration}", now=NOW) or ""
    return secrets


def test_each_client_of_the_ledger_gets_closures_of_its_territory(
        toporder: tuple[Simulation, str], fleet: dict[str, str]) -> None:
    _, base_url = toporder
    bistro = get(base_url, fleet["bistro"], DAY).json()
    epicerie = get(base_url, fleet["epicerie"], DAY).json()

    assert {s["vat_rate"] for s in bistro["sales"]} <= METROPOLE_RATES
    assert {s["vat_rate"] for s in epicerie["sales"]} <= DOM_RATES
    assert "8.5" in {s["vat_rate"] for s in epicerie["sales"]}
    assert bistro["closure"]["closed_at"].endswith("+01:00")
    assert epicerie["closure"]["closed_at"].endswith("-04:00")
    # An identifier no client has is unknown, as at Toporder: not served as a default client.
    unknown = get(base_url, "tpo_nobody", DAY)
    assert (unknown.status_code, unknown.json()["error"]) == (404, "unknown_integration")


def test_each_clients_notifications_are_checked_with_its_own_secret(
        toporder: tuple[Simulation, str], engine: Engine, fleet: dict[str, str]) -> None:
    simulation, base_url = toporder
    bistro, epicerie = fleet["bistro"], fleet["epicerie"]
    body = b'{"type": "day.flagged"}'
    # Before `clients set-webhook` the client has no secret: not an acceptable delivery.
    assert notify(base_url, bistro, body).status_code == 503

    secrets = set_webhooks(engine, base_url, fleet)

    assert notify(base_url, bistro, body, secret=secrets["bistro"]).status_code == 200
    assert notify(base_url, bistro, body, message="evt_2",
                  secret=secrets["epicerie"]).status_code == 401
    assert notify(base_url, epicerie, body, message="evt_3",
                  secret=secrets["epicerie"]).status_code == 200
    assert notify(base_url, "tpo_nobody", body, message="evt_4",
                  secret=secrets["bistro"]).status_code == 404
    # A new secret (`set-webhook --new-secret`) is taken at once; the old one no longer works.
    with session_scope(engine) as session:
        renewed = notifications.set_webhook(session, "bistro", f"{base_url}/webhooks/{bistro}",
                                            now=NOW, new_secret=True)
    assert renewed is not None
    assert notify(base_url, bistro, body, message="evt_5", secret=renewed).status_code == 200
    assert notify(base_url, bistro, body, message="evt_6",
                  secret=secrets["bistro"]).status_code == 401
    assert sorted((w.integration_id, w.webhook_id) for w in simulation.webhooks.values()) == \
        sorted([(bistro, "evt_1"), (epicerie, "evt_3"), (bistro, "evt_5")])


def test_the_relay_delivers_each_clients_flagged_days_to_the_simulator(
        toporder: tuple[Simulation, str], engine: Engine, fleet: dict[str, str]) -> None:
    simulation, base_url = toporder
    set_webhooks(engine, base_url, fleet)
    events = {flag_day(engine, "bistro", DAY): fleet["bistro"],
              flag_day(engine, "epicerie", DAY - timedelta(days=1)): fleet["epicerie"]}

    handler = notifications.WebhookHandler(engine, clock=lambda: NOW)
    try:
        report = outbox.relay(engine, {notifications.TOPIC: handler}, now=lambda: NOW)
    finally:
        handler.close()

    assert report == outbox.RelayReport(claimed=2, sent=2)
    assert {w.webhook_id: w.integration_id for w in simulation.webhooks.values()} == events
    with session_scope(engine) as session:
        assert {e.status for e in outbox.list_messages(session)} == {"sent"}


def test_simulator_push_signs_with_the_push_secret_the_ledger_issued(
        engine: Engine, ledger_url: str, fleet: dict[str, str]) -> None:
    with session_scope(engine) as session:
        connections.issue_push_secret(session, "epicerie")
    receiver = serve_in_thread(receiver_app(engine))
    try:
        result = CliRunner().invoke(main, [
            "simulator", "--start", str(START), "push", fleet["epicerie"],
            "--receiver", receiver.base_url, "--from", str(START), "--to", str(DAY)],
            env={"TOPORDER_SYNC_DATABASE_URL": ledger_url, "TOPORDER_PUSH_SECRET": None})
    finally:
        receiver.stop()
    assert result.exit_code == 0, result.output
    assert result.output.count("HTTP 201") == 3
    # With a ledger, a territory or a webhook secret of its own would contradict the clients'.
    refused = CliRunner().invoke(main, ["simulator", "--territory", "dom"],
                                 env={"TOPORDER_SYNC_DATABASE_URL": ledger_url})
    assert refused.exit_code == 2

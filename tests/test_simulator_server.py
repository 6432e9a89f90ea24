"""The fake Toporder over real HTTP on 127.0.0.1: deterministic closures, faults chosen by the
seed, bearer auth, and the error-notification endpoint (signatures, dedupe by webhook-id)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from toporder_sync import signing
from toporder_sync.core.errors import ConfigurationError
from toporder_sync.core.money import parse_amount
from toporder_sync.core.simulator import CARD, RENAMED_CARD, dumps, generate_closure
from toporder_sync.simulator_server import (
    FaultRule,
    Simulation,
    SimulatorConfig,
    create_app,
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
    # What is served is the core simulator's closure (whose validity test_simulator checks),
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

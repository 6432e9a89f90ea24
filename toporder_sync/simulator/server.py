"""A fake Toporder on 127.0.0.1: its closures API, its pushes, its error-notification endpoint.

What it promises:

* It plays Toporder for a whole fleet when given the ledger's clients (``ledger_integrations``):
  each integration identifier is served as its client, with the client's territory (hence its
  VAT rates) and timezone, and the secrets the ledger issued to it (``clients set-webhook``,
  ``clients push-secret``), read when first needed and read again when a signature fails (the
  client may have been given a new secret since). An identifier the ledger does not know is
  404, as at Toporder: a simulator reading another ledger than the fleet's says so at once.
  Without a ledger, any identifier is served with the configuration's ``territory`` and
  ``timezone`` and its notifications checked with ``webhook_secret`` (or with the identifier's
  own key, given by ``set_webhook_secret``).
* ``GET /v1/integrations/{id}/closures/{day}`` serves the closure of ``simulator.closures`` for
  that day: deterministic per identifier and day, numbers +1 and perpetual total carried from
  ``start`` (the day the register started; earlier days and days not over yet are 404). The
  venue (restaurant, bakery, bar, shop) is drawn from the identifier unless one is given. With
  a ``token``, requests need ``Authorization: Bearer``.
* ``push`` sends the same closures to a receiver, signed (Standard Webhooks, ``signing.sign``)
  with the client's push secret; the message id is derived from the body, so a resend of one
  closure is recognisable as such.
* ``POST /webhooks/{id}`` takes Toporder's side of error notifications: the signature is checked
  with the identifier's webhook secret (above), a ``webhook-id`` seen before is acknowledged
  without being recorded again, and ``GET /webhooks`` lists what was received.
* Faults are chosen by ``FaultRule``s, each deciding from a hash of (seed, fault, identifier,
  day, request number), never from a clock or a process-salted random: the same seed gives the
  same faults on the same requests, so tests are deterministic. HTTP faults (``429``, ``5xx``,
  ``timeout``, ``truncated``, ``garbled``) are drawn per request; ``late``, ``missing`` and the
  content faults of ``simulator.faults.FAULTS`` (``unbalanced``, ``wrong_vat_rate``,
  ``unknown_method``, ``renamed_method``) per day, so a closure stays the same across requests.
* ``serve_in_thread`` runs any ASGI application on a free port of 127.0.0.1 in a thread, for
  tests and for the command line; it returns the base URL and a stop function.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import uvicorn
from sqlalchemy import Engine, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from toporder_sync import signing
from toporder_sync.core.errors import ConfigurationError, RefusedError
from toporder_sync.core.model import Territory
from toporder_sync.core.money import ZERO, parse_amount
from toporder_sync.ledger.db import session_scope
from toporder_sync.ledger.tables import ClientRow
from toporder_sync.simulator import closures, till
from toporder_sync.simulator.faults import FAULTS, FaultRule
from toporder_sync.toporder_api import INTEGRATION_HEADER

DEFAULT_START = date(2026, 10, 1)
MAX_WEBHOOK_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    seed: int = 0
    faults: tuple[FaultRule, ...] = ()
    start: date = DEFAULT_START
    venue: str | None = None
    territory: Territory = Territory.METROPOLE
    timezone: str = "Europe/Paris"
    token: str | None = field(default=None, repr=False)
    webhook_secret: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Integration:
    """What Toporder knows of one integration identifier: its client's territory and timezone,
    and the secrets the ledger issued to the client (None: not issued)."""

    integration_id: str
    territory: Territory
    timezone: str
    webhook_secret: str | None = field(default=None, repr=False)
    push_secret: str | None = field(default=None, repr=False)


# Looks an integration identifier up; None if no client has it.
Integrations = Callable[[str], Integration | None]


class UnknownIntegration(RefusedError):
    def __init__(self, integration_id: str) -> None:
        super().__init__(f"no client of the ledger has the integration identifier "
                         f"{integration_id!r}")


class NoWebhookSecret(ConfigurationError):
    def __init__(self, integration_id: str) -> None:
        super().__init__(f"no webhook secret for {integration_id!r}: the ledger issues one with "
                         "`toporder-sync clients set-webhook` (without a ledger: "
                         "`simulator --webhook-secret`)")


def ledger_integrations(engine: Engine) -> Integrations:
    """The ledger's clients as Toporder knows them, read in a short transaction each time."""

    def look_up(integration_id: str) -> Integration | None:
        with session_scope(engine) as session:
            row = session.execute(
                select(ClientRow.territory, ClientRow.timezone, ClientRow.webhook_secret,
                       ClientRow.push_secret)
                .where(ClientRow.integration_id == integration_id)
            ).one_or_none()
        if row is None:
            return None
        return Integration(integration_id, Territory(row.territory), row.timezone,
                           row.webhook_secret, row.push_secret)

    return look_up


@dataclass(frozen=True, slots=True)
class ServedRequest:
    """One request to the closures API, as the simulator answered it."""

    integration_id: str
    business_date: date
    number: int
    status: int
    fault: str | None
    arrived: float  # time.monotonic()


@dataclass(frozen=True, slots=True)
class WebhookRecord:
    webhook_id: str
    integration_id: str
    received_at: str
    payload: Any
    deliveries: int


def _draw(*parts: object) -> float:
    """A number in [0, 1) fixed by ``parts``: the same on every run and every machine."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def message_id(raw: bytes) -> str:
    """The Standard Webhooks message id of a pushed closure: one per content."""
    return "msg_" + hashlib.sha256(raw).hexdigest()[:32]


class Simulation:
    """The state of one fake Toporder: its registers, request counts, webhooks received."""

    def __init__(self, config: SimulatorConfig,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 integrations: Integrations | None = None) -> None:
        self.config = config
        self.clock = clock
        self._integrations = integrations
        self._known: dict[str, Integration] = {}
        self._lock = threading.Lock()
        self._perpetual: dict[str, list[Decimal]] = {}
        self._counts: dict[tuple[str, date], int] = {}
        self._deliveries: dict[str, int] = {}
        self.requests: list[ServedRequest] = []
        self.webhooks: dict[str, WebhookRecord] = {}
        self._webhook_secrets: dict[str, str] = {}

    def set_faults(self, *faults: FaultRule) -> None:
        with self._lock:
            self.config = replace(self.config, faults=faults)

    # --- integrations --------------------------------------------------------------------

    def integration(self, integration_id: str, *, fresh: bool = False) -> Integration | None:
        """The client behind ``integration_id``: looked up once (again if ``fresh``); None if
        the ledger has no such identifier. Without a ledger, every identifier is a client of
        the configuration's territory, timezone and webhook secret."""
        if self._integrations is None:
            return Integration(integration_id, self.config.territory, self.config.timezone,
                               self.config.webhook_secret)
        with self._lock:
            known = self._known.get(integration_id)
        if known is not None and not fresh:
            return known
        # Outside the lock: a slow ledger must not hold up the requests of other clients.
        found = self._integrations(integration_id)
        with self._lock:
            if found is None:
                self._known.pop(integration_id, None)
            else:
                self._known[integration_id] = found
        return found

    # --- closures ------------------------------------------------------------------------

    def venue(self, integration_id: str) -> str:
        if self.config.venue is not None:
            return self.config.venue
        return till.VENUES[int(_draw("venue", integration_id) * len(till.VENUES))]

    def strikes_day(self, name: str, integration_id: str, day: date) -> FaultRule | None:
        for rule in self.config.faults:
            if rule.name == name and _draw(self.config.seed, name, integration_id, day) < rule.rate:
                return rule
        return None

    def strikes_request(self, name: str, key: str, number: int) -> FaultRule | None:
        for rule in self.config.faults:
            if (rule.name == name and (rule.first is None or number <= rule.first)
                    and _draw(self.config.seed, name, key, number) < rule.rate):
                return rule
        return None

    def content_faults(self, integration_id: str, day: date) -> frozenset[str]:
        return frozenset(name for name in FAULTS
                         if self.strikes_day(name, integration_id, day))

    def closure(self, integration_id: str, day: date) -> bytes | None:
        """The closure of that day as Toporder would serve it, or None before ``start``.

        Raises ``UnknownIntegration`` if the ledger has no such identifier.
        """
        known = self.integration(integration_id)
        if known is None:
            raise UnknownIntegration(integration_id)
        return self.closure_of(known, day)

    def closure_of(self, integration: Integration, day: date) -> bytes | None:
        start = self.config.start
        if day < start:
            return None
        offset = (day - start).days
        with self._lock:
            perpetuals = self._perpetual.setdefault(integration.integration_id, [])
            while len(perpetuals) < offset:
                self._document(integration, start + timedelta(days=len(perpetuals)),
                               perpetuals)
            return closures.dumps(self._document(integration, day, perpetuals))

    def _document(self, integration: Integration, day: date,
                  perpetuals: list[Decimal]) -> dict[str, Any]:
        integration_id = integration.integration_id
        offset = (day - self.config.start).days
        venue = self.venue(integration_id)
        tag = hashlib.sha256(integration_id.encode()).hexdigest()[:8]
        document = closures.generate_closure(
            integration_id=integration_id, establishment_id=f"est-{tag}",
            establishment_name=f"Simulated {venue} {tag}", business_date=day, venue=venue,
            territory=integration.territory, number=offset + 1,
            perpetual_before=perpetuals[offset - 1] if offset else ZERO,
            timezone=integration.timezone, faults=self.content_faults(integration_id, day),
        )
        if len(perpetuals) == offset:
            perpetuals.append(parse_amount(document["closure"]["grand_total"]["perpetual"]))
        return document

    def next_request(self, integration_id: str, day: date) -> int:
        with self._lock:
            number = self._counts.get((integration_id, day), 0) + 1
            self._counts[(integration_id, day)] = number
            return number

    def record(self, served: ServedRequest) -> None:
        with self._lock:
            self.requests.append(served)

    # --- webhooks ------------------------------------------------------------------------

    def set_webhook_secret(self, integration_id: str, secret: str) -> None:
        """Check the notifications of ``integration_id`` with this key from now on."""
        with self._lock:
            self._webhook_secrets[integration_id] = secret

    def webhook_secret(self, integration_id: str, *, fresh: bool = False) -> str | None:
        """The key of ``integration_id``'s notifications: the one given by
        ``set_webhook_secret``, else its client's (``integration``); ``fresh`` reads the
        ledger again. Raises ``UnknownIntegration`` if the ledger has no such identifier."""
        with self._lock:
            given = self._webhook_secrets.get(integration_id)
        if given is not None:
            return given
        known = self.integration(integration_id, fresh=fresh)
        if known is None:
            raise UnknownIntegration(integration_id)
        return known.webhook_secret

    def verify_webhook(self, integration_id: str, headers: Mapping[str, str],
                       body: bytes) -> str:
        """The ``webhook-id`` of a notification signed with ``integration_id``'s secret.

        Raises ``UnknownIntegration``, ``NoWebhookSecret`` or ``signing.SignatureError``.
        """
        secret = self.webhook_secret(integration_id)
        if self._integrations is not None and not self._signed_with(secret, headers, body):
            # The client may have been issued a new secret since it was read: read it again.
            secret = self.webhook_secret(integration_id, fresh=True)
        if secret is None:
            raise NoWebhookSecret(integration_id)
        return signing.verify(secret, headers, body, now=self.clock())

    def _signed_with(self, secret: str | None, headers: Mapping[str, str], body: bytes) -> bool:
        if secret is None:
            return False
        try:
            signing.verify(secret, headers, body, now=self.clock())
        except signing.SignatureError:
            return False
        return True

    def next_delivery(self, webhook_id: str) -> int:
        with self._lock:
            number = self._deliveries.get(webhook_id, 0) + 1
            self._deliveries[webhook_id] = number
            return number

    def webhook_failure(self, webhook_id: str, delivery: int) -> bool:
        return self.strikes_request("webhook_5xx", webhook_id, delivery) is not None

    def record_webhook(self, webhook_id: str, integration_id: str, payload: Any) -> bool:
        """Keep a notification; False if its ``webhook-id`` was already received."""
        with self._lock:
            seen = self.webhooks.get(webhook_id)
            if seen is not None:
                self.webhooks[webhook_id] = replace(seen, deliveries=seen.deliveries + 1)
                return False
            self.webhooks[webhook_id] = WebhookRecord(
                webhook_id, integration_id, self.clock().isoformat(), payload, 1)
            return True


def _error(status: int, rule: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": rule, "message": message}, status_code=status,
                        headers=headers or None)


def _unknown(integration_id: str) -> JSONResponse:
    return _error(404, "unknown_integration", str(UnknownIntegration(integration_id)))


class _CutResponse(Response):
    """Declares the whole body's Content-Length, sends half of it, then drops the connection."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body[: len(self.body) // 2],
                    "more_body": True})
        # Returning with the response unfinished makes uvicorn close the connection (with one
        # log line): what a cut network does to the client.


def create_app(simulation: Simulation) -> Starlette:
    """The simulator's ASGI application."""

    async def closure(request: Request) -> Response:
        integration_id = request.path_params["integration_id"]
        token = simulation.config.token
        if token is not None and request.headers.get("authorization") != f"Bearer {token}":
            return _error(401, "unauthenticated", "a valid bearer token is required")
        try:
            day = date.fromisoformat(request.path_params["business_date"])
        except ValueError:
            return _error(400, "business_date", "not a date YYYY-MM-DD")
        known = await asyncio.to_thread(simulation.integration, integration_id)
        number = simulation.next_request(integration_id, day)
        status: int
        fault: str | None
        response: Response
        if known is None:
            status, fault, response = 404, None, _unknown(integration_id)
        else:
            status, fault, response = await _answer(known, day, number)
        simulation.record(ServedRequest(integration_id, day, number, status, fault,
                                        time.monotonic()))
        return response

    async def _answer(known: Integration, day: date,
                      number: int) -> tuple[int, str | None, Response]:
        integration_id = known.integration_id
        strikes = simulation.strikes_request
        key = f"{integration_id}/{day}"
        if simulation.strikes_day("missing", integration_id, day):
            return 404, "missing", _error(404, "not_found", "no closure for this day")
        late = simulation.strikes_day("late", integration_id, day)
        if late is not None and number <= late.requests:
            return 404, "late", _error(404, "not_found", "no closure for this day yet")
        rule = strikes("429", key, number)
        if rule is not None:
            return 429, "429", _error(429, "rate_limited", "too many requests",
                                      **{"Retry-After": str(rule.retry_after)})
        if strikes("5xx", key, number):
            return 503, "5xx", _error(503, "unavailable", "try again later")
        fault = None
        rule = strikes("timeout", key, number)
        if rule is not None:
            fault = "timeout"
            await asyncio.sleep(rule.delay)
        if day >= simulation.clock().date():
            return 404, fault, _error(404, "not_found", "the business day is not over yet")
        raw = await asyncio.to_thread(simulation.closure_of, known, day)
        if raw is None:
            return 404, fault, _error(404, "not_found", "the register had not started")
        if strikes("truncated", key, number):
            return 200, "truncated", _CutResponse(raw, media_type="application/json")
        if strikes("garbled", key, number):
            return 200, "garbled", Response(raw[: len(raw) // 2], media_type="application/json")
        return 200, fault, Response(raw, media_type="application/json")

    async def webhook(request: Request) -> JSONResponse:
        integration_id = request.path_params["integration_id"]
        body = await request.body()
        if len(body) > MAX_WEBHOOK_BYTES:
            return _error(413, "too_large", f"at most {MAX_WEBHOOK_BYTES} bytes")
        try:
            webhook_id = await asyncio.to_thread(simulation.verify_webhook, integration_id,
                                                 request.headers, body)
        except UnknownIntegration:
            return _unknown(integration_id)
        except NoWebhookSecret as exc:
            return _error(503, "not_configured", str(exc))
        except signing.SignatureError as exc:
            return _error(401, "unauthenticated", str(exc))
        if simulation.webhook_failure(webhook_id, simulation.next_delivery(webhook_id)):
            return _error(503, "unavailable", "simulated failure; deliver it again")
        try:
            payload: Any = json.loads(body)
        except ValueError:
            payload = body.decode("utf-8", errors="replace")
        created = simulation.record_webhook(webhook_id, request.path_params["integration_id"],
                                            payload)
        return JSONResponse({"received": True, "duplicate": not created})

    async def webhooks(request: Request) -> JSONResponse:
        wanted = request.query_params.get("integration_id")
        return JSONResponse({"webhooks": [
            {"webhook_id": w.webhook_id, "integration_id": w.integration_id,
             "received_at": w.received_at, "deliveries": w.deliveries, "payload": w.payload}
            for w in list(simulation.webhooks.values())
            if wanted is None or w.integration_id == wanted
        ]})

    async def health(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[
        Route("/v1/integrations/{integration_id}/closures/{business_date}", closure,
              methods=["GET"]),
        Route("/webhooks/{integration_id}", webhook, methods=["POST"]),
        Route("/webhooks", webhooks, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ])


@dataclass(frozen=True, slots=True)
class PushResult:
    business_date: date
    status: int
    answer: Any


def push(simulation: Simulation, receiver_url: str, integration_id: str, secret: str,
         days: Iterable[date], *, timeout: float = 10.0) -> list[PushResult]:
    """Post each day's closure to the receiver at ``receiver_url``, signed with ``secret``."""
    results = []
    with httpx.Client(base_url=receiver_url.rstrip("/"), timeout=timeout) as client:
        for day in days:
            raw = simulation.closure(integration_id, day)
            if raw is None:
                continue
            headers = signing.sign(secret, message_id(raw), raw, now=simulation.clock())
            response = client.post("/v1/closures", content=raw, headers={
                **headers, INTEGRATION_HEADER: integration_id,
                "content-type": "application/json"})
            try:
                answer: Any = response.json()
            except ValueError:
                answer = response.text
            results.append(PushResult(day, response.status_code, answer))
    return results


@dataclass(frozen=True, slots=True)
class RunningServer:
    base_url: str
    stop: Callable[[], None]


def serve_in_thread(app: Any, *, host: str = "127.0.0.1", port: int = 0,
                    startup_timeout: float = 10.0) -> RunningServer:
    """Serve ``app`` with uvicorn in a daemon thread; ``port=0`` takes a free one."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name=f"uvicorn-{bound_port}")
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError(f"the server on {host}:{bound_port} did not start")
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()

    return RunningServer(f"http://{host}:{bound_port}", stop)

"""Telling Toporder about a client's flagged days: the ``day.flagged`` webhook.

Promises:

* Every alert of a day, recorded ``flagged`` (category POS or ledger) or ``missing``, gets one
  notification, written to the outbox in the transaction that records the day
  (``enqueue_flagged``, called by ``service.flag``); ``waiting`` and ``refused`` days are not
  notified (nothing is wrong yet, or nobody has anything to fix). A rerun that flags the day
  again with the same errors raises no new alert (``service.alert_key``), hence no message:
  Toporder hears of a problem once, and again only if it changed.
* Its event id (the ``webhook-id`` header) is deterministic: a hash of the client's integration
  identifier, the business day, the state and the attempt number of the day, which the
  transaction that records the day holds under its lock. The same recording replayed (a
  transaction rolled back, then retried) gives the same id and one message. The
  integration identifier, random per activation, keeps ids of a rebuilt ledger from colliding
  with ids Toporder has already seen.
* A client without a webhook URL still gets its messages in the outbox: they stay ``pending``
  (the relay defers them with a ``last_error`` saying so, without spending attempts) and go out
  once ``clients set-webhook`` has configured the URL, which also makes them due at once.
* The request is ``POST`` of the JSON payload to the client's URL, signed Standard Webhooks
  style (``signing.sign``), with connect/read timeouts and no redirects followed. 2xx is
  delivered; 408, 429, 5xx and network errors are retried (``DeliveryFailed``, honouring
  Retry-After); any other status is refused for good (``DeliveryRefused``: dead-lettered).
  Errors name the URL's host only: a URL may carry a token, and the secret and the signature
  never appear in an error or a log line.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
from sqlalchemy import Engine, Table, bindparam, select
from sqlalchemy.orm import Session

from toporder_sync import signing
from toporder_sync.core.errors import Category, ConfigurationError, Finding, RefusedError
from toporder_sync.ledger.db import Executor, session_scope
from toporder_sync.ledger.tables import Base, ClientRow, DayState
from toporder_sync.outbox import (
    DeliveryDeferred,
    DeliveryFailed,
    DeliveryRefused,
    Message,
    enqueue,
    register,
    wake,
)
from toporder_sync.retrying import retry_after_seconds

TOPIC: Final = "day.flagged"
# The day states Toporder is told about; the others are not errors anybody must act on.
NOTIFIED_STATES: Final[frozenset[DayState]] = frozenset({"flagged", "missing"})
# Connect and read limits of one delivery; together well under outbox.LEASE / CLAIM_BATCH.
DEFAULT_TIMEOUT: Final = httpx.Timeout(10.0, connect=5.0)
_RETRIED_STATUSES: Final = frozenset({408, 429})
_MAX_BODY_IN_ERROR = 200
_LOCAL_HOSTS: Final = frozenset({"localhost"})


@dataclass(frozen=True, slots=True)
class Webhook:
    """Where and with which key a client's notifications go (either may be unset)."""

    url: str | None
    secret: str | None


def event_id(integration_id: str, business_date: date, state: DayState, attempt: int) -> str:
    """The deterministic event id of the ``attempt``-th recording of a day (module docstring)."""
    key = f"{TOPIC}\n{integration_id}\n{business_date.isoformat()}\n{state}\n{attempt}"
    return "msg_" + hashlib.sha256(key.encode()).hexdigest()[:40]


def payload(*, event: str, client_id: str, integration_id: str, business_date: date,
            state: DayState, category: Category | None, findings: Sequence[Finding],
            attempt: int, now: datetime) -> dict[str, Any]:
    """The JSON body: Standard Webhooks' ``type``/``timestamp``/``data`` envelope."""
    return {
        "type": TOPIC,
        "timestamp": now.isoformat(),
        "data": {
            "event_id": event,
            "client_id": client_id,
            "integration_id": integration_id,
            "business_date": business_date.isoformat(),
            "state": state,
            "category": None if category is None else category.value,
            "attempt": attempt,
            "errors": [f.as_dict() for f in findings if f.is_error],
            "warnings": [f.as_dict() for f in findings if not f.is_error],
        },
    }


# The column alone, not the client's row: this runs for every day notified.
_CLIENTS: Table = Base.metadata.tables["clients"]
_INTEGRATION_ID = select(_CLIENTS.c.integration_id).where(
    _CLIENTS.c.client_id == bindparam("client"))


def enqueue_flagged(db: Executor, client_id: str, business_date: date, *, state: DayState,
                    category: Category | None, findings: Sequence[Finding], attempt: int,
                    now: datetime) -> str | None:
    """Put the notification of a day just recorded in the outbox, in the caller's transaction.

    ``attempt`` is the day's attempt number as recorded (1 for its first run). Returns the event
    id, or None for a state that is not notified.
    """
    if state not in NOTIFIED_STATES:
        return None
    integration_id = db.execute(_INTEGRATION_ID, {"client": client_id}).scalar()
    if integration_id is None:
        raise RefusedError(f"unknown client {client_id!r}")
    event = event_id(integration_id, business_date, state, attempt)
    return enqueue(
        db, topic=TOPIC, client_id=client_id, business_date=business_date, now=now,
        event_id=event,
        payload=payload(event=event, client_id=client_id, integration_id=integration_id,
                        business_date=business_date, state=state, category=category,
                        findings=findings, attempt=attempt, now=now),
    )


def check_url(url: str) -> str:
    """A webhook URL: https, or http to this machine only (tests, a local relay)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigurationError(f"webhook URL {url!r} is not an http(s) URL with a host")
    if parts.scheme == "http" and not _is_local(host):
        raise ConfigurationError("a webhook URL must be https (http only to localhost)")
    return url


def _is_local(host: str) -> bool:
    if host in _LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def set_webhook(session: Session, client_id: str, url: str, *, now: datetime,
                new_secret: bool = False) -> str | None:
    """Set the client's webhook URL; issue its signing secret if it has none (or if
    ``new_secret``: the old one stops working at once).

    Returns the new secret (to hand to Toporder, once), or None when the client keeps the one
    it had. The client's pending notifications become due at once.
    """
    row = _client(session, client_id, for_update=True)
    row.webhook_url = check_url(url)
    issued = None
    if row.webhook_secret is None or new_secret:
        issued = row.webhook_secret = signing.new_secret()
    wake(session, client_id, topic=TOPIC, now=now)
    return issued


def webhook(session: Session, client_id: str) -> Webhook:
    row = _client(session, client_id)
    return Webhook(row.webhook_url, row.webhook_secret)


def _client(session: Session, client_id: str, *, for_update: bool = False) -> ClientRow:
    query = select(ClientRow).where(ClientRow.client_id == client_id)
    if for_update:
        query = query.with_for_update(key_share=True)
    row = session.scalars(query).one_or_none()
    if row is None:
        raise RefusedError(f"unknown client {client_id!r}")
    return row


class WebhookHandler:
    """Delivers ``day.flagged`` messages to the client's webhook (see the module docstring).

    ``clock`` dates the signature: the wall clock, since the receiver compares it with its own.
    One HTTP client is kept for the handler's life (its connections are reused from one
    message to the next); ``close`` lets it go.
    """

    def __init__(self, engine: Engine, *, timeout: httpx.Timeout = DEFAULT_TIMEOUT,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._engine = engine
        self._clock = clock
        self._http = httpx.Client(timeout=timeout, follow_redirects=False)

    def close(self) -> None:
        self._http.close()

    def deliver(self, message: Message) -> str | None:
        # Read in a short transaction of its own: the URL or secret may have been set since
        # the message was written, and no transaction stays open across the request.
        with session_scope(self._engine) as session:
            target = webhook(session, message.client_id)
        if target.url is None or target.secret is None:
            raise DeliveryDeferred(
                f"{message.client_id} has no webhook URL or secret yet: configure them with "
                f"`toporder-sync clients set-webhook {message.client_id} URL`"
            )
        body = json.dumps(message.payload, ensure_ascii=False, separators=(",", ":"),
                          sort_keys=True).encode()
        headers = {"content-type": "application/json",
                   **signing.sign(target.secret, message.event_id, body, now=self._clock())}
        host = urlsplit(target.url).hostname
        try:
            response = self._http.post(target.url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise DeliveryFailed(f"webhook {host}: timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise DeliveryFailed(f"webhook {host}: {type(exc).__name__}: {exc}") from None
        if response.is_success:
            return None
        error = (f"webhook {host}: HTTP {response.status_code}: "
                 f"{response.text[:_MAX_BODY_IN_ERROR]!r}")
        if response.status_code in _RETRIED_STATUSES or response.status_code >= 500:
            raise DeliveryFailed(error, retry_after=retry_after(response, now=self._clock()))
        raise DeliveryRefused(error)

    def record(self, session: Session, message: Message, remote_ref: str | None) -> None:
        """Nothing to record: the outbox row marked sent is the whole trace of a webhook."""


def retry_after(response: httpx.Response, *, now: datetime) -> timedelta | None:
    """The wait a response's ``Retry-After`` asks for, if it asks for one."""
    seconds = retry_after_seconds(response.headers.get("retry-after"), now=now)
    return None if seconds is None else timedelta(seconds=seconds)


register(TOPIC, WebhookHandler)

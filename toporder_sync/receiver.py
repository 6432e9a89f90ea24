"""The push receiver: Toporder posts each closure to ``POST /v1/closures``, signed.

What it promises (``openapi/toporder-closures.yaml`` documents the wire format):

* Only a body declared ``Content-Type: application/json`` is read (the media type in any case,
  parameters allowed, but a ``charset`` must be ``utf-8``: closures are strict UTF-8). Any other
  type, or none, is 415, checked first of all: it depends on nothing but the request's own
  header, reveals nothing, and spares reading a body that would never be stored.
* A closure is stored only when the request is authenticated: the header
  ``x-toporder-integration-id`` names a client that has a push secret, and the Standard Webhooks
  headers (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``) sign the exact body
  with that secret, within 300 s of now. Any failure is the same 401, so that a caller cannot
  learn which identifiers exist. A malformed header (``signing`` says which forms are allowed:
  a timestamp of ASCII digits only, bounded lengths, printable ASCII) is one of these failures,
  the same 401 rather than a 400: the headers are the credentials, and a distinct answer would
  tell a prober which of their parts it got right; the sender's fix is the same either way
  (sign again, as the specification says). It is never a 500.
* The body is stored byte for byte through ``service.receive``, as the ``receive`` command
  does: a new closure is answered 201, an identical resend 200 with the same ``closure_id`` and
  ``created: false``; nothing is ever stored twice.
* A ``webhook-id`` is the message's for good (``ledger.webhooks``): sent again with the same
  body it is a resend as above, with another body it is refused 409 ``webhook_id_reused``. It is
  recorded in the transaction that stores the closure, so a refused push stores neither, and of
  racing pushes of one id with different bodies exactly one is stored.
* Refusals are JSON ``{"error": rule, "message": ...}``, in the order checked: 415 not JSON by
  its ``Content-Type``, 413 over ``MAX_BODY_BYTES``, 401 unauthenticated, 400 not strict JSON or
  not routable (the findings of ``ClosureRejected``), 403 the closure names another integration
  identifier than the header, 422 a day before the client's activation, 409 a reused
  ``webhook-id``, 503 the ledger is busy (with ``Retry-After``: try again).
* No secret, signature or body is ever logged; a log line names the client, day and closure.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import uvicorn
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from toporder_sync import service, signing
from toporder_sync.core.closure import MAX_CLOSURE_BYTES, load_document, route
from toporder_sync.core.errors import (
    ClosureRejected,
    RefusedError,
    ToporderSyncError,
    TransientError,
)
from toporder_sync.ledger import connections
from toporder_sync.ledger.db import session_scope
from toporder_sync.ledger.webhooks import WebhookIdReused
from toporder_sync.toporder_api import INTEGRATION_HEADER

# The closure format's own limit: a bigger body could never be stored anyway.
MAX_BODY_BYTES = MAX_CLOSURE_BYTES
# Seconds a sender should wait before trying again when the ledger is busy.
BUSY_RETRY_AFTER = 5

log = logging.getLogger(__name__)


class _Refusal(ToporderSyncError):
    """A request refused with an HTTP answer; never leaves this module."""

    def __init__(self, status: int, rule: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.rule = rule
        self.message = message
        self.extra = extra

    def response(self) -> JSONResponse:
        headers = ({"Retry-After": str(BUSY_RETRY_AFTER)} if self.status == 503 else None)
        return JSONResponse({"error": self.rule, "message": self.message, **self.extra},
                            status_code=self.status, headers=headers)


_UNAUTHENTICATED = (401, "unauthenticated",
                    "missing or unknown integration identifier, or a missing, malformed, "
                    "invalid or expired signature")
_UNSUPPORTED = (415, "unsupported_media_type",
                "a closure is sent as Content-Type: application/json (UTF-8); nothing stored")
# An integration identifier is at most the ledger's column (``clients.integration_id``).
_INTEGRATION_ID = re.compile(r"[\x21-\x7e]{1,64}")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(engine: Engine, *, clock: Callable[[], datetime] = _utc_now,
               max_body_bytes: int = MAX_BODY_BYTES,
               tolerance: int = signing.TOLERANCE) -> Starlette:
    """The receiver's ASGI application, storing into the ledger of ``engine``."""

    async def closures(request: Request) -> JSONResponse:
        try:
            return await _receive(request)
        except _Refusal as refusal:
            return refusal.response()

    async def _receive(request: Request) -> JSONResponse:
        if not _is_json(request.headers.get("content-type")):
            raise _Refusal(*_UNSUPPORTED)
        raw = await _bounded_body(request, max_body_bytes)
        integration_id = request.headers.get(INTEGRATION_HEADER, "")
        if not _INTEGRATION_ID.fullmatch(integration_id):
            raise _Refusal(*_UNAUTHENTICATED)
        credentials = await run_in_threadpool(_credentials, engine, integration_id)
        if credentials is None or credentials.push_secret is None:
            raise _Refusal(*_UNAUTHENTICATED)
        try:
            message_id = signing.verify(credentials.push_secret, request.headers, raw,
                                        now=clock(), tolerance=tolerance)
        except (signing.SignatureError, ValueError):
            raise _Refusal(*_UNAUTHENTICATED) from None
        where = f"push {message_id} for {credentials.client_id}"
        try:
            routing = route(load_document(raw, where), where)
        except ClosureRejected as exc:
            raise _Refusal(400, exc.findings[0].rule, str(exc),
                           findings=[f.as_dict() for f in exc.findings]) from None
        if routing.integration_id != integration_id:
            raise _Refusal(403, "integration_mismatch",
                           f"the closure's integration_id is not the one of header "
                           f"{INTEGRATION_HEADER}; nothing stored")
        try:
            received = await run_in_threadpool(service.receive, engine, raw, where, now=clock(),
                                               message_id=message_id)
        except WebhookIdReused as exc:
            log.info("%s: refused, the webhook-id was already received with another body",
                     where)
            raise _Refusal(409, "webhook_id_reused", str(exc)) from None
        except RefusedError as exc:
            raise _Refusal(422, "refused", str(exc)) from None
        except ClosureRejected as exc:
            raise _Refusal(400, exc.findings[0].rule, str(exc),
                           findings=[f.as_dict() for f in exc.findings]) from None
        except TransientError:
            raise _Refusal(503, "busy", "the ledger is busy; send it again later") from None
        log.info("%s: %s %s closure #%d %s", where, received.client_id, received.business_date,
                 received.closure_id, "stored" if received.created else "already received")
        return JSONResponse(
            {"closure_id": received.closure_id, "created": received.created,
             "business_date": received.business_date.isoformat(), "sha256": received.sha256},
            status_code=201 if received.created else 200,
        )

    async def health(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[
        Route("/v1/closures", closures, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
    ])


def _is_json(content_type: str | None) -> bool:
    """Whether a ``Content-Type`` declares JSON in UTF-8: ``application/json`` in any case, with
    parameters (``; charset=utf-8``) or none. Not: a ``charset`` other than ``utf-8``, a
    parameter without a value, no header at all (RFC 9110 lets a recipient guess the type of
    an undeclared body; a ledger does not guess)."""
    if content_type is None:
        return False
    media_type, *parameters = content_type.split(";")
    if media_type.strip().lower() != "application/json":
        return False
    for parameter in filter(None, (p.strip() for p in parameters)):  # "a;" is RFC 9110's
        name, equals, value = parameter.partition("=")
        if not equals or not name.strip():
            return False
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() != "utf-8":
            return False
    return True


def _credentials(engine: Engine, integration_id: str) -> connections.PushCredentials | None:
    with session_scope(engine) as session:
        return connections.push_credentials(session, integration_id)


async def _bounded_body(request: Request, limit: int) -> bytes:
    """The body, read no further than ``limit`` bytes (a liar's Content-Length included)."""
    too_big = _Refusal(413, "too_large", f"a closure is at most {limit} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


def serve(engine: Engine, *, host: str, port: int) -> None:
    """Run the receiver until interrupted (uvicorn; its access log names paths, never bodies)."""
    # uvicorn configures its own loggers only; this module's one line per closure needs a handler.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    uvicorn.run(create_app(engine), host=host, port=port, log_level="info")

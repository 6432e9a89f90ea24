"""The push receiver: Toporder posts each closure to ``POST /v1/closures``, signed.

What it promises (``openapi/toporder-closures.yaml`` documents the wire format):

* A closure is stored only when the request is authenticated: the header
  ``x-toporder-integration-id`` names a client that has a push secret, and the Standard Webhooks
  headers (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``) sign the exact body
  with that secret, within 300 s of now. Any failure is the same 401, so that a caller cannot
  learn which identifiers exist.
* The body is stored byte for byte through ``service.receive``, as the ``receive`` command
  does: a new closure is answered 201, an identical resend 200 with the same ``closure_id`` and
  ``created: false``; nothing is ever stored twice.
* Refusals are JSON ``{"error": rule, "message": ...}``: 400 not strict JSON or not routable
  (the findings of ``ClosureRejected``), 401 unauthenticated, 403 the closure names another
  integration identifier than the header, 413 over ``MAX_BODY_BYTES``, 422 a day before the
  client's activation, 503 the ledger is busy (with ``Retry-After``: try again).
* No secret, signature or body is ever logged; a log line names the client, day and closure.
"""

from __future__ import annotations

import logging
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
                    "missing or unknown integration identifier, or a missing, invalid or "
                    "expired signature")


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
        raw = await _bounded_body(request, max_body_bytes)
        integration_id = request.headers.get(INTEGRATION_HEADER, "")
        if not integration_id:
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
            received = await run_in_threadpool(service.receive, engine, raw, where, now=clock())
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


def _credentials(engine: Engine, integration_id: str) -> connections.PushCredentials | None:
    with session_scope(engine) as session:
        return connections.push_credentials(session, integration_id)


async def _bounded_body(request: Request, limit: int) -> bytes:
    """The body, read no further than ``limit`` bytes (a liar's Content-Length included)."""
    too_big = _Refusal(413, "too_large", f"a closure is at most {limit} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
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

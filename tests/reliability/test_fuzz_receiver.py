"""Class 3, bad inputs: the push receiver fuzzed over HTTP on 127.0.0.1, on both backends.

Two fuzzers post to a live receiver (uvicorn in a thread, ``serve_in_thread``), each request
signed with the client's push secret so that it gets past 401 to the interesting parts:

* schemathesis generates requests of ``pushClosure`` from ``openapi/toporder-closures.yaml``,
  positive and negative, and checks the answers against the document (status documented,
  JSON of the documented schema, no server error). The document's ``Closure`` only sketches
  the body and refers to ``closure-v1.schema.json``: the fuzzer puts that schema in its place,
  so that generated closures reach routing, storage and the day's run. Most requests carry
  the client's identifier (in the header and the body) and a signature over what is sent, at
  the receiver's time; one in four keeps the generated ``webhook-id`` and
  ``webhook-timestamp`` (signed all the same), which tries the header checks.
* Hypothesis posts hostile closures (``strategies_hostile``) with hostile headers: timestamps
  of hundreds of digits or with non-ASCII digits, odd ids, content types that are not JSON,
  and the same ``webhook-id`` sent again with another body.

The property: every answer is a documented status, never a 5xx but 503 (busy), its body a
JSON error ``{"error", "message"}`` when refused; a body declared as something else than JSON
is never stored; a reused ``webhook-id`` with another body is refused 409; and every closure
stored (200, 201) runs to an outcome a person can act on, the invariants of the ledger holding.
Tries: ``RELIABILITY_SCHEMATHESIS`` per generation mode (default 80),
``RELIABILITY_HYPOTHESIS`` (default 300) for the hostile posts, halved on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import yaml
from hypothesis import given, note, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Engine

from reliability import invariants, support, tally
from reliability.strategies_hostile import FUZZ_SETTINGS, HostileClosure, hostile_closures
from toporder_sync import signing
from toporder_sync.day import client_record
from toporder_sync.ledger import connections
from toporder_sync.ledger.clients import ClientRecord
from toporder_sync.ledger.db import session_scope
from toporder_sync.receiver import create_app
from toporder_sync.simulator.server import message_id, serve_in_thread
from toporder_sync.toporder_api import INTEGRATION_HEADER

ROOT = Path(__file__).parent.parent.parent
SPEC = ROOT / "openapi" / "toporder-closures.yaml"
CLOSURE_SCHEMA = ROOT / "schemas" / "closure-v1.schema.json"
SCHEMATHESIS_EXAMPLES = int(os.environ.get("RELIABILITY_SCHEMATHESIS", "80"))
HYPOTHESIS_EXAMPLES = int(os.environ.get("RELIABILITY_HYPOTHESIS", "300"))
KNOWN_OUTCOMES = frozenset({"posted", "flagged", "nothing to post", "refused", "waiting",
                            "missing"})
# No keep-alive: a connection the server drops after an error must not fail the next try.
HTTP = httpx.Client(timeout=30, limits=httpx.Limits(max_keepalive_connections=0))


def _spec() -> dict[str, Any]:
    """The OpenAPI document with the full closure schema as ``Closure`` (its ``$defs``
    inlined, as an OpenAPI component cannot hold them)."""
    spec: dict[str, Any] = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    closure: dict[str, Any] = json.loads(CLOSURE_SCHEMA.read_text(encoding="utf-8"))
    definitions = closure.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(definitions[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()
                    if key not in ("$schema", "$id")}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    spec["components"]["schemas"]["Closure"] = inline(closure)
    return spec


def _documented(spec: dict[str, Any]) -> frozenset[int]:
    return frozenset(int(status) for status in
                     spec["paths"]["/v1/closures"]["post"]["responses"])


@dataclass(frozen=True, slots=True)
class Receiver:
    url: str
    engine: Engine
    client: ClientRecord
    secret: str

    def post(self, raw: bytes, headers: dict[str, str | bytes]) -> httpx.Response:
        return HTTP.post(f"{self.url}/v1/closures", content=raw, headers=_wire(headers))

    def signed(self, raw: bytes, *, webhook_id: str | None = None,
               timestamp: str | None = None) -> dict[str, str | bytes]:
        webhook_id = webhook_id or message_id(raw)
        stamp = timestamp or str(int(support.NOW.timestamp()))
        signature = "v1,"
        if stamp.isascii() and stamp.isdigit():
            # A timestamp no date holds is refused for its clock before any signature.
            with contextlib.suppress(ValueError):
                signature = signing.signature(self.secret, webhook_id, int(stamp), raw)
        return {INTEGRATION_HEADER: self.client.integration_id, signing.ID_HEADER: webhook_id,
                signing.TIMESTAMP_HEADER: stamp, signing.SIGNATURE_HEADER: signature,
                "content-type": "application/json"}


@pytest.fixture
def receiver(engine: Engine) -> Iterator[Receiver]:
    support.activate(engine, "push-fuzz")
    with session_scope(engine) as session:
        secret = connections.issue_push_secret(session, "push-fuzz").secret
    client = client_record(engine, "push-fuzz")
    running = serve_in_thread(create_app(engine, clock=lambda: support.NOW))
    yield Receiver(running.base_url, engine, client, secret)
    running.stop()


def _header_value(value: Any) -> str | bytes:
    """A header as httpx can send it: ASCII text as is, other text as its Latin-1 bytes, or
    UTF-8 bytes when Latin-1 cannot hold it."""
    text = str(value)
    if text.isascii():
        return text
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _wire(headers: dict[str, str | bytes]) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value if isinstance(value, bytes) else value.encode("latin-1"))
            for name, value in headers.items()]


def _check_answer(receiver: Receiver, response: httpx.Response, raw: bytes,
                  documented: frozenset[int], where: str) -> None:
    """The property every answer must have; a stored closure's day is run and checked."""
    status = response.status_code
    assert status in documented, f"{where}: undocumented status {status}: {response.text[:300]}"
    assert status < 500 or status == 503, f"{where}: server error {status}: {response.text[:300]}"
    assert response.headers.get("content-type", "").startswith("application/json"), \
        f"{where}: {status} is not JSON: {response.text[:300]}"
    answer = response.json()
    assert isinstance(answer, dict), answer
    if status >= 400:
        assert isinstance(answer.get("error"), str) and isinstance(answer.get("message"), str), \
            answer
        return
    business_date = date.fromisoformat(answer["business_date"])
    result = support.run(receiver.engine, receiver.client, business_date,
                         run_id=f"{where}-run")
    assert result.outcome.kind in KNOWN_OUTCOMES, (where, result.outcome, result.findings)
    if result.outcome.kind == "flagged":
        assert all(f.rule and f.field and f.message for f in result.findings), result.findings
    found = tally.record(invariants.check(
        receiver.engine, delivered=[(receiver.client.client_id, raw)],
        only=[(receiver.client.client_id, business_date)]), where)
    assert not found, found.describe()


def test_schemathesis_pushes_get_documented_answers_and_stored_ones_run(
        receiver: Receiver) -> None:
    spec = _spec()
    documented = _documented(spec)
    operation = schemathesis.openapi.from_dict(spec)["/v1/closures"]["POST"]
    examples = SCHEMATHESIS_EXAMPLES // (2 if receiver.engine.dialect.name != "sqlite" else 1)
    tries = itertools.count()
    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_schema_conformance]

    def fuzz(mode: GenerationMode) -> None:
        kind = f"schemathesis: receiver, {mode.value} ({receiver.engine.dialect.name})"

        @settings(FUZZ_SETTINGS, max_examples=examples)
        @given(operation.as_strategy(generation_mode=mode))
        def push(case: schemathesis.Case[Any]) -> None:
            n = next(tries)
            tally.tried("bad_input", kind)
            sent = case.as_transport_kwargs(base_url=receiver.url)
            if "json" in sent:
                body = sent["json"]
                if isinstance(body, dict):  # past 403: the body names the header's client
                    body = {**body, "integration_id": receiver.client.integration_id}
                raw = json.dumps(body).encode()  # lone surrogates as \u escapes
            else:
                data = sent.get("data", b"")
                raw = data if isinstance(data, bytes) else str(data).encode("utf-8",
                                                                           "surrogatepass")
            generated = {str(k).lower(): v for k, v in (sent.get("headers") or {}).items()}
            if zlib.crc32(raw) % 4 == 0:  # the generated id and timestamp, signed
                headers = receiver.signed(
                    raw, webhook_id=str(generated.get(signing.ID_HEADER) or message_id(raw)),
                    timestamp=str(generated.get(signing.TIMESTAMP_HEADER) or "0"))
            else:
                headers = receiver.signed(raw)
            headers = {**{k: _header_value(v) for k, v in generated.items()
                          if k not in headers and k != "content-length"}, **headers}
            note(f"headers: {headers!r}\nbody: {raw[:600]!r}")
            response = HTTP.request(sent.get("method", "POST"), sent["url"], content=raw,
                                    headers=_wire(headers))
            case.validate_response(response, checks=checks)
            _check_answer(receiver, response, raw, documented, f"schemathesis #{n}")

        push()

    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        fuzz(mode)


@st.composite
def _headers(draw: st.DrawFn) -> dict[str, str | None]:
    """What may be odd about the headers: None keeps what a correct sender sends."""
    now = int(support.NOW.timestamp())
    timestamp = draw(st.one_of(
        st.none(), st.none(), st.none(),
        st.integers(1, 400).map(lambda n: "9" * n),
        # Not with spaces around: h11 cannot send them (a proxy would strip them anyway).
        st.sampled_from((str(now).zfill(20), f"+{now}", f"{now} 1", f"{now}.0", f"{now}_0",
                         "-1", "0", "1e9",
                         "".join(chr(0x0660 + int(c)) for c in str(now)),  # Arabic-Indic
                         "".join(chr(0xFF10 + int(c)) for c in str(now)))),  # full width
    ))
    webhook_id = draw(st.one_of(
        st.none(), st.none(),
        st.sampled_from(("x" * 129, "x" * 10_000, "msg id", "msg\tid", "é", "\x7f")),
    ))
    content_type = draw(st.one_of(
        st.none(), st.none(),
        st.sampled_from(("text/plain", "application/x-www-form-urlencoded",
                         "multipart/form-data; boundary=x", "application/json; charset=latin-1",
                         "application/jsonx", "", "application/json; charset=utf-8",
                         "APPLICATION/JSON")),
    ))
    return {"timestamp": timestamp, "webhook_id": webhook_id, "content_type": content_type}


_JSON_TYPES = frozenset({None, "application/json; charset=utf-8", "APPLICATION/JSON"})


def test_hostile_pushes_get_documented_answers_and_stored_ones_run(receiver: Receiver) -> None:
    documented = _documented(_spec())
    examples = HYPOTHESIS_EXAMPLES // (2 if receiver.engine.dialect.name != "sqlite" else 1)
    tries = itertools.count()
    kind = f"hypothesis: receiver ({receiver.engine.dialect.name})"

    @settings(FUZZ_SETTINGS, max_examples=examples)
    @given(hostile_closures(receiver.client.integration_id, support.DAYS), _headers(),
           st.booleans())
    def push(hostile: HostileClosure, odd: dict[str, str | None], reuse_id: bool) -> None:
        n = next(tries)
        tally.tried("bad_input", kind)
        note(f"{hostile!r}\nheaders: {odd}, reuse id: {reuse_id}\nbody: {hostile.raw[:600]!r}")
        headers = receiver.signed(hostile.raw, webhook_id=odd["webhook_id"],
                                  timestamp=odd["timestamp"])
        if odd["content_type"] is not None:
            headers["content-type"] = odd["content_type"]
        headers = {k: _header_value(v) for k, v in headers.items()}
        response = receiver.post(hostile.raw, headers)
        where = f"hypothesis receiver #{n}"
        _check_answer(receiver, response, hostile.raw, documented, where)
        if odd["content_type"] not in _JSON_TYPES:
            assert response.status_code not in (200, 201), \
                f"{where}: a body sent as {odd['content_type']!r} was stored"
        if reuse_id and response.status_code in (200, 201):
            other = hostile.raw + b" "
            again = receiver.signed(other, webhook_id=str(headers[signing.ID_HEADER]),
                                    timestamp=str(headers[signing.TIMESTAMP_HEADER]))
            reused = receiver.post(other, {**headers, **again})
            assert reused.status_code == 409, \
                f"{where}: webhook-id reused with another body: {reused.status_code}"
            _check_answer(receiver, reused, other, documented, f"{where} (id reused)")

    push()

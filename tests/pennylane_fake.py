"""A fake Pennylane API v2 on 127.0.0.1, a real HTTP server for the sink's tests.

It follows the public API's shapes (``/work/shared/spec/pennylane-api.md``): bearer tokens,
``/journals``, ``/ledger_accounts`` with the ``filter`` query, ``/ledger_entries`` POST and GET
(filtered by journal and date, paginated with ``page`` / ``per_page``), errors as
``{"error", "message", "details"}`` with 401, 404 and 422, and the rate limit of 25 requests per
5 seconds per token: ``429`` with ``retry-after``, ``ratelimit-*`` headers on every response.

Faults are switched on per test: ``fail_next_post(kind)`` makes the next entry POST create the
entry and then time out (answer too late), fail with a 500, or drop the connection without an
answer; ``throttle(n)`` answers the next n requests 429.
"""

from __future__ import annotations

import bisect
import json
import math
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

PREFIX = "/api/external/v2"
AMOUNT = re.compile(r"^\d{1,12}\.\d{2}$")
Fault = Literal["timeout", "500", "drop"]


@dataclass
class Logged:
    method: str
    path: str
    status: int
    # When the request arrived (time.monotonic(), the clock of the fake's own rate limit).
    arrived: float = field(default_factory=time.monotonic)


@dataclass
class FakePennylane:
    """One Pennylane company reachable with ``tokens``; ``url`` once started."""

    tokens: frozenset[str] = frozenset({"plk-good-token"})
    rate_limit: int = 25
    window: float = 5.0
    hang: float = 1.0
    journals: list[dict[str, Any]] = field(default_factory=list)
    accounts: list[dict[str, Any]] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)
    log: list[Logged] = field(default_factory=list)
    _faults: deque[Fault] = field(default_factory=deque)
    _throttled: int = 0
    _throttle_after: int = 1
    _sent: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next_id: int = 1000
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    # --- set-up

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{PREFIX}"

    def start(self) -> FakePennylane:
        fake = self

        class Handler(_Handler):
            pennylane = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # Closing must not wait for handler threads idling on keep-alive connections.
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="fake-pennylane")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakePennylane:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def new_id(self) -> int:
        with self._lock:
            self._next_id += 1
            return self._next_id

    def add_journal(self, code: str, label: str = "Journal des ventes") -> int:
        journal_id = self.new_id()
        self.journals.append({"id": journal_id, "code": code, "label": label})
        return journal_id

    def add_account(self, number: str, label: str = "", *, enabled: bool = True) -> int:
        account_id = self.new_id()
        self.accounts.append({"id": account_id, "number": number, "label": label or number,
                              "enabled": enabled, "vat_rate": None})
        return account_id

    def fail_next_post(self, fault: Fault) -> None:
        """The next entry POST creates the entry, then fails as ``fault`` says."""
        self._faults.append(fault)

    def throttle(self, requests: int, retry_after: int = 1) -> None:
        """Answer the next ``requests`` requests 429 with ``retry-after``."""
        self._throttled = requests
        self._throttle_after = retry_after

    # --- what happened

    def posts(self) -> list[Logged]:
        """Every entry POST received (status 0: created, but answered late or never)."""
        return [e for e in self.log if e.method == "POST"]

    def statuses(self) -> list[int]:
        return [e.status for e in self.log]

    def busiest_window(self) -> int:
        """The most requests that arrived within one ``window`` (429s included)."""
        arrivals = sorted(e.arrived for e in self.log)
        return max((bisect.bisect_left(arrivals, start + self.window) - index
                    for index, start in enumerate(arrivals)), default=0)

    # --- rate limit

    def _admit(self, token: str) -> tuple[bool, dict[str, str]]:
        """Count a request of ``token``; whether it is within the limit, and the headers."""
        now = time.monotonic()
        with self._lock:
            sent = self._sent.setdefault(token, deque())
            while sent and sent[0] <= now - self.window:
                sent.popleft()
            forced = self._throttled > 0
            if forced:
                self._throttled -= 1
            allowed = not forced and len(sent) < self.rate_limit
            if allowed:
                sent.append(now)
            reset = math.ceil(sent[0] + self.window - now) if sent else 0
            headers = {"ratelimit-limit": str(self.rate_limit),
                       "ratelimit-remaining": str(max(0, self.rate_limit - len(sent))),
                       "ratelimit-reset": str(reset)}
            if not allowed:
                headers["retry-after"] = str(self._throttle_after if forced else max(1, reset))
        return allowed, headers


class _Handler(BaseHTTPRequestHandler):
    pennylane: FakePennylane
    arrived: float
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: the tests read FakePennylane.log instead

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    # --- dispatch

    def _handle(self, method: str) -> None:
        self.arrived = time.monotonic()
        fake = self.pennylane
        parts = urlsplit(self.path)
        path = parts.path.removeprefix(PREFIX)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        auth = self.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else ""
        if token not in fake.tokens:
            self._send(method, path, 401, {"error": "unauthorized",
                                           "message": "Invalid or missing token", "details": {}})
            return
        allowed, headers = fake._admit(token)
        if not allowed:
            self._send(method, path, 429, {"error": "too_many_requests",
                                           "message": "Rate limit exceeded", "details": {}},
                       headers)
            return
        route = (method, path)
        if route == ("GET", "/journals"):
            self._page(method, path, fake.journals, query, headers)
        elif route == ("GET", "/ledger_accounts"):
            self._page(method, path, _filtered(fake.accounts, query), query, headers)
        elif route == ("GET", "/ledger_entries"):
            listed = [_listed(e) for e in _filtered(fake.entries, query)]
            self._page(method, path, listed, query, headers)
        elif route == ("POST", "/ledger_entries"):
            self._create(method, path, body, headers)
        else:
            self._send(method, path, 404, {"error": "not_found", "message": "Not found",
                                           "details": {}}, headers)

    def _page(self, method: str, path: str, items: list[dict[str, Any]],
              query: dict[str, str], headers: dict[str, str]) -> None:
        page = int(query.get("page", "1"))
        per_page = min(int(query.get("per_page", "20")), 100)
        total_pages = max(1, math.ceil(len(items) / per_page))
        chunk = items[(page - 1) * per_page: page * per_page]
        self._send(method, path, 200, {"total_pages": total_pages, "current_page": page,
                                       "total_items": len(items), "per_page": per_page,
                                       "items": chunk}, headers)

    def _create(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> None:
        fake = self.pennylane
        try:
            data = json.loads(body)
        except ValueError:
            self._send(method, path, 400, {"error": "bad_request", "message": "Invalid JSON",
                                           "details": {}}, headers)
            return
        problem = _problem(fake, data)
        if problem is not None:
            message, details = problem
            self._send(method, path, 422, {"error": "unprocessable_entity", "message": message,
                                           "details": details}, headers)
            return
        entry_id = fake.new_id()
        lines = [{**line, "id": fake.new_id()} for line in data["ledger_entry_lines"]]
        entry = {"id": entry_id, "label": data["label"], "date": data["date"],
                 "journal_id": data["journal_id"], "piece_number": data.get("piece_number"),
                 "currency": data.get("currency", "EUR"), "ledger_entry_lines": lines}
        fake.entries.append(entry)
        fault = fake._faults.popleft() if fake._faults else None
        if fault == "timeout":
            # Created, but the answer comes after the client gave up (logged now: the test
            # may be done before it is sent).
            fake.log.append(Logged(method, path, 0, self.arrived))
            time.sleep(fake.hang)
            self._send(method, path, 201, {"id": entry_id}, headers, log=False)
            return
        elif fault == "500":
            self._send(method, path, 500, {"error": "internal_server_error",
                                           "message": "Something went wrong", "details": {}},
                       headers)
            return
        elif fault == "drop":
            fake.log.append(Logged(method, path, 0, self.arrived))
            self.close_connection = True  # no answer at all: the server closes the socket
            return
        answer = {"id": entry_id, "label": entry["label"], "date": entry["date"],
                  "journal": {"id": entry["journal_id"]}, "piece_number": entry["piece_number"],
                  "ledger_entry_lines": [{"id": line["id"]} for line in lines]}
        self._send(method, path, 201, answer, headers)

    def _send(self, method: str, path: str, status: int, body: dict[str, Any],
              headers: dict[str, str] | None = None, *, log: bool = True) -> None:
        if log:
            self.pennylane.log.append(Logged(method, path, status, self.arrived))
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up waiting (the timeout fault)


def _filtered(items: list[dict[str, Any]], query: dict[str, str]) -> list[dict[str, Any]]:
    conditions = json.loads(query.get("filter", "[]"))
    kept = []
    for item in items:
        for condition in conditions:
            value = str(item.get(condition["field"]))
            wanted = str(condition["value"])
            operator = condition["operator"]
            if operator == "eq" and value != wanted:
                break
            if operator == "start_with" and not value.startswith(wanted):
                break
            if operator not in ("eq", "start_with"):
                raise ValueError(f"operator {operator!r} not supported by the fake")
        else:
            kept.append(item)
    return kept


def _listed(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry as GET /ledger_entries lists it (its lines are a separate resource)."""
    return {k: v for k, v in entry.items() if k != "ledger_entry_lines"}


def _problem(fake: FakePennylane, data: Any) -> tuple[str, dict[str, Any]] | None:
    """Why Pennylane would refuse this entry (422), or None."""
    if not isinstance(data, dict):
        return "Invalid entry", {}
    for required in ("date", "label", "journal_id", "ledger_entry_lines"):
        if required not in data:
            return f"{required} is missing", {required: ["is missing"]}
    if data["journal_id"] not in {j["id"] for j in fake.journals}:
        return "Journal not found", {"journal_id": [f"{data['journal_id']} not found"]}
    lines = data["ledger_entry_lines"]
    if not lines or len(lines) > 1000:
        return "An entry has 1 to 1000 lines", {"ledger_entry_lines": ["count"]}
    known = {a["id"] for a in fake.accounts}
    debit = credit = Decimal(0)
    for index, line in enumerate(lines):
        if line.get("ledger_account_id") not in known:
            return ("Ledger account not found",
                    {f"ledger_entry_lines[{index}].ledger_account_id":
                     [f"{line.get('ledger_account_id')} not found"]})
        for side in ("debit", "credit"):
            if not isinstance(line.get(side), str) or not AMOUNT.match(line[side]):
                return (f"{side} must be a decimal string",
                        {f"ledger_entry_lines[{index}].{side}": [repr(line.get(side))]})
        debit += Decimal(line["debit"])
        credit += Decimal(line["credit"])
    if debit != credit:
        return ("Entry lines are not balanced",
                {"ledger_entry_lines": [f"debit {debit} != credit {credit}"]})
    return None


TOKEN = "plk-good-token"  # noqa: S105 (the fake's token)


def sales_company(accounts: tuple[str, ...], **options: Any) -> FakePennylane:
    """A company (not started) with a purchases journal HA, the sales journal VT and these
    accounts, reachable with ``TOKEN``."""
    pennylane = FakePennylane(tokens=frozenset({TOKEN}), **options)
    pennylane.add_journal("HA", "Journal des achats")
    pennylane.add_journal("VT")
    for number in accounts:
        pennylane.add_account(number)
    return pennylane

"""A small client of Pennylane's public API v2: journals, ledger accounts, ledger entries.

Promises:

* Every call has a timeout (``DEFAULT_TIMEOUT``) and goes through the rate limiter of its token:
  at most ``RATE_LIMIT`` requests per ``RATE_WINDOW`` seconds per token across every thread of
  the process, as Pennylane allows. A ``429`` all the same is honoured: the token's limiter is
  paused for ``retry-after`` seconds (every thread waits) and the request is sent again, a few
  times at most.
* Amounts leave as strings with two decimals, made from ``Decimal`` (a float is refused).
* Failures are sorted by what they mean for a retry (see ``toporder_sync.core.errors``):
  ``PennylaneUnavailable`` (a ``TransientError``) may pass; its ``uncertain`` flag says the
  request may have been carried out anyway (a timeout after sending, a 5xx, a connection
  dropped mid-way), so a POST must not be repeated without looking first.
  ``PennylaneRejected`` is Pennylane saying no (4xx): a finding of category LEDGER, to fix on
  the Pennylane side or in the client's settings, never worth retrying as it is.
* The token is only ever an HTTP header: it is in no message, repr or log line of this module.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, TypeVar

import httpx

from toporder_sync.core.errors import (
    Category,
    ConfigurationError,
    Finding,
    ToporderSyncError,
    TransientError,
    ledger_error,
)
from toporder_sync.core.money import require_money

DEFAULT_BASE_URL = "https://app.pennylane.com/api/external/v2"
# Points the client at another server (a sandbox, the tests' fake Pennylane).
BASE_URL_ENV = "TOPORDER_SYNC_PENNYLANE_URL"
RATE_LIMIT = 25
RATE_WINDOW = 5.0
# The server counts arrivals, we count departures: a request delayed on its way (a slow
# connect, a busy thread) must not make the limit+1-th one arrive inside the server's window.
RATE_MARGIN = 0.25
# Connecting should be quick; creating an entry of a few hundred lines may take a while. The
# outbox wants one delivery (a few requests) to stay well within 30 s.
DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=5.0, pool=10.0)
# A retry-after longer than this, or more 429s in a row than MAX_THROTTLED, is not slept through
# here: the call fails as transient with the wait, and the outbox tries again after it.
MAX_RETRY_AFTER = 10.0
MAX_THROTTLED = 3
PER_PAGE = 100
# A listing longer than this is a runaway pagination, not a journal's day of entries.
MAX_PAGES = 1000

_T = TypeVar("_T")


class PennylaneUnavailable(TransientError):
    """Pennylane could not be reached or failed (timeout, connection, 429 past patience, 5xx).

    ``uncertain``: the request may have been carried out all the same; for a POST, look before
    posting again. ``retry_after``: seconds Pennylane asked us to wait (429), if it did.
    """

    def __init__(self, message: str, *, uncertain: bool,
                 retry_after: float | None = None) -> None:
        self.uncertain = uncertain
        self.retry_after = retry_after
        super().__init__(message)


class PennylaneRejected(ToporderSyncError):
    """Pennylane refused the request, or lacks what the entry needs: fix on the Pennylane side.

    ``finding`` carries the message for the person who must act (category LEDGER).
    """

    def __init__(self, finding: Finding, *, status_code: int | None = None) -> None:
        self.finding = finding
        self.status_code = status_code
        super().__init__(finding.message)

    @property
    def category(self) -> Category:
        return self.finding.category


@dataclass(frozen=True, slots=True)
class Journal:
    id: int
    code: str
    label: str


@dataclass(frozen=True, slots=True)
class LedgerAccount:
    id: int
    number: str
    label: str
    enabled: bool


@dataclass(frozen=True, slots=True)
class RemoteEntry:
    id: int
    date: date
    journal_id: int
    piece_number: str | None
    label: str


@dataclass(frozen=True, slots=True)
class EntryLinePayload:
    ledger_account_id: int
    debit: Decimal
    credit: Decimal
    label: str


@dataclass(frozen=True, slots=True)
class EntryPayload:
    """The body of ``POST /ledger_entries``."""

    date: date
    label: str
    journal_id: int
    piece_number: str
    lines: tuple[EntryLinePayload, ...]
    currency: str = "EUR"

    def as_json(self) -> dict[str, Any]:
        return {
            "date": self.date.isoformat(),
            "label": self.label,
            "journal_id": self.journal_id,
            "piece_number": self.piece_number,
            "currency": self.currency,
            "ledger_entry_lines": [
                {
                    "ledger_account_id": line.ledger_account_id,
                    "debit": amount_text(line.debit),
                    "credit": amount_text(line.credit),
                    "label": line.label,
                }
                for line in self.lines
            ],
        }


def amount_text(amount: Decimal) -> str:
    """``Decimal("925")`` → ``"925.00"``; a float or a sub-cent amount raises MoneyTypeError."""
    return f"{require_money(amount):f}"


def base_url() -> str:
    """``$TOPORDER_SYNC_PENNYLANE_URL``, else Pennylane's production API v2."""
    url = os.environ.get(BASE_URL_ENV, "").strip()
    return (url or DEFAULT_BASE_URL).rstrip("/")


# --- rate limiting ----------------------------------------------------------------------------


class RateLimiter:
    """At most ``limit`` requests in any ``window`` (+ ``margin``) seconds, shared by every
    thread using it.

    Each caller reserves the earliest instant allowed (under a lock) and then sleeps until it
    outside the lock, so waiting callers queue in order instead of spinning.
    """

    def __init__(self, limit: int = RATE_LIMIT, window: float = RATE_WINDOW, *,
                 margin: float = RATE_MARGIN, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if limit < 1 or window <= 0 or margin < 0:
            raise ValueError(f"a rate limit needs limit >= 1, window > 0 and margin >= 0, "
                             f"not {limit}/{window}/{margin}")
        self.limit = limit
        self.window = window
        self.margin = margin
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        # Reserved send instants of the last `limit` requests, in increasing order.
        self._sent: deque[float] = deque(maxlen=limit)
        self._paused_until = 0.0

    def acquire(self) -> None:
        """Wait until one more request may be sent, and count it."""
        with self._lock:
            now = self._clock()
            start = max(now, self._paused_until)
            if len(self._sent) == self.limit:
                start = max(start, self._sent[0] + self.window + self.margin)
            self._sent.append(start)
        if start > now:
            self._sleep(start - now)

    def pause(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (the server said so with a 429)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)


_limiters: dict[str, RateLimiter] = {}
_limiters_lock = threading.Lock()


def token_fingerprint(token: str) -> str:
    """A stable, non-reversible name for a token (cache keys, limiter registry)."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def limiter_for(token: str) -> RateLimiter:
    """The process-wide limiter of ``token``: Pennylane counts requests per token."""
    key = token_fingerprint(token)
    with _limiters_lock:
        limiter = _limiters.get(key)
        if limiter is None:
            limiter = _limiters[key] = RateLimiter()
        return limiter


# --- the client -------------------------------------------------------------------------------


class PennylaneClient:
    """One company's API, through its token. Close it (or use ``with``) when done."""

    def __init__(self, token: str, *, url: str | None = None,
                 timeout: httpx.Timeout = DEFAULT_TIMEOUT, limiter: RateLimiter | None = None,
                 max_throttled: int = MAX_THROTTLED,
                 max_retry_after: float = MAX_RETRY_AFTER) -> None:
        if not token.strip():
            raise ConfigurationError("the Pennylane API token is empty")
        self.url = url or base_url()
        self._limiter = limiter if limiter is not None else limiter_for(token)
        self._max_throttled = max_throttled
        self._max_retry_after = max_retry_after
        self._http = httpx.Client(
            base_url=self.url,
            timeout=timeout,
            headers={"authorization": f"Bearer {token}", "accept": "application/json"},
        )

    def __repr__(self) -> str:
        return f"PennylaneClient({self.url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PennylaneClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    # --- endpoints

    def journals(self) -> list[Journal]:
        return [_parse(_journal, item, "journal") for item in self._pages("/journals", {})]

    def ledger_accounts(self, number: str) -> list[LedgerAccount]:
        """Accounts whose number is exactly ``number`` (several ids can share one)."""
        # The API filters by prefix ("start_with"); the exact match is ours to make.
        query = {"filter": _filter(("number", "start_with", number))}
        accounts = [_parse(_account, item, "ledger account")
                    for item in self._pages("/ledger_accounts", query)]
        return [account for account in accounts if account.number == number]

    def ledger_entries(self, journal_id: int, day: date) -> list[RemoteEntry]:
        """The entries of a journal dated ``day`` (every page)."""
        query = {"filter": _filter(("journal_id", "eq", str(journal_id)),
                                   ("date", "eq", day.isoformat()))}
        return [_parse(_remote_entry, item, "ledger entry")
                for item in self._pages("/ledger_entries", query)]

    def create_ledger_entry(self, payload: EntryPayload) -> int:
        """POST the entry; its id in Pennylane."""
        response = self._request("POST", "/ledger_entries", json_body=payload.as_json())
        try:
            return int(response.json()["id"])
        except (ValueError, KeyError, TypeError) as exc:
            # Created, most likely, yet unreadable: look before posting again.
            raise PennylaneUnavailable(
                f"POST /ledger_entries answered {response.status_code} without an entry id",
                uncertain=True) from exc

    # --- plumbing

    def _pages(self, path: str, query: Mapping[str, str]) -> Iterator[Mapping[str, Any]]:
        for page in range(1, MAX_PAGES + 1):
            response = self._request("GET", path, params={**query, "page": str(page),
                                                          "per_page": str(PER_PAGE)})
            try:
                body = response.json()
                items = body["items"]
                total_pages = int(body.get("total_pages") or 1)
            except (ValueError, KeyError, TypeError) as exc:
                raise PennylaneUnavailable(f"GET {path}: not a page of items",
                                           uncertain=False) from exc
            yield from items
            if page >= total_pages or not items:
                return
        raise PennylaneUnavailable(f"GET {path}: more than {MAX_PAGES} pages", uncertain=False)

    def _request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                 json_body: Mapping[str, Any] | None = None) -> httpx.Response:
        # Only a POST changes anything: a GET that failed half-way is simply not carried out.
        changes = method != "GET"
        throttled = 0
        while True:
            self._limiter.acquire()
            try:
                response = self._http.request(method, path, params=params, json=json_body)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                # Nothing was sent: certain that nothing happened.
                raise PennylaneUnavailable(
                    f"{method} {path}: cannot reach Pennylane at {self.url} "
                    f"({type(exc).__name__})", uncertain=False) from exc
            except httpx.TransportError as exc:
                raise PennylaneUnavailable(
                    f"{method} {path}: no answer from Pennylane ({type(exc).__name__})",
                    uncertain=changes) from exc
            if response.status_code == 429:
                wait = _retry_after(response)
                throttled += 1
                if throttled > self._max_throttled or wait > self._max_retry_after:
                    raise PennylaneUnavailable(
                        f"{method} {path}: rate limited by Pennylane (retry after {wait:g} s)",
                        uncertain=False, retry_after=wait)
                # A 429 was not carried out: wait as told (every user of the token) and resend.
                self._limiter.pause(wait)
                continue
            if response.status_code >= 500:
                raise PennylaneUnavailable(
                    f"{method} {path}: Pennylane failed with {response.status_code}",
                    uncertain=changes)
            if response.status_code >= 400:
                raise PennylaneRejected(_refusal(method, path, response),
                                        status_code=response.status_code)
            return response


def _filter(*conditions: tuple[str, str, str]) -> str:
    return json.dumps([{"field": f, "operator": o, "value": v} for f, o, v in conditions])


def _retry_after(response: httpx.Response) -> float:
    value = response.headers.get("retry-after", "").strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return RATE_WINDOW  # absent or unreadable: one window is what the limit is about
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _refusal(method: str, path: str, response: httpx.Response) -> Finding:
    """Pennylane's ``{"error", "message", "details"}`` as a LEDGER finding."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    error = str(body.get("error") or response.reason_phrase)
    message = str(body.get("message") or "").strip()
    details = body.get("details")
    text = f"Pennylane refused {method} {path} ({response.status_code} {error})"
    if message:
        text += f": {message}"
    if details:
        text += f" {json.dumps(details, ensure_ascii=False, sort_keys=True)}"
    if response.status_code in (401, 403):
        text += ("; the API token is invalid, revoked or lacks a scope (ledger_entries:all, "
                 "journals, ledger accounts): issue a new one in Pennylane")
    return ledger_error(f"pennylane_{response.status_code}", "pennylane", text)


def _parse(make: Callable[[Mapping[str, Any]], _T], item: Any, what: str) -> _T:
    try:
        return make(item)
    except (KeyError, TypeError, ValueError) as exc:
        raise PennylaneUnavailable(f"Pennylane sent an unreadable {what}: {exc!r}",
                                   uncertain=False) from exc


def _journal(item: Mapping[str, Any]) -> Journal:
    return Journal(id=int(item["id"]), code=str(item["code"]), label=str(item.get("label", "")))


def _account(item: Mapping[str, Any]) -> LedgerAccount:
    return LedgerAccount(id=int(item["id"]), number=str(item["number"]),
                         label=str(item.get("label", "")), enabled=bool(item.get("enabled", True)))


def _remote_entry(item: Mapping[str, Any]) -> RemoteEntry:
    # v2 answers either a bare journal_id or a nested {"journal": {"id": ...}}.
    journal_id = item["journal_id"] if "journal_id" in item else item["journal"]["id"]
    piece = item.get("piece_number")
    return RemoteEntry(id=int(item["id"]), date=date.fromisoformat(item["date"]),
                       journal_id=int(journal_id),
                       piece_number=None if piece is None else str(piece),
                       label=str(item.get("label", "")))

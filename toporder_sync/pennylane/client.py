"""A small client of Pennylane's public API v2: journals, ledger accounts, ledger entries.

Promises:

* Every call has a timeout (``DEFAULT_TIMEOUT``) and goes through the rate limiter of its token
  (``limiter_for``): at most ``RATE_LIMIT`` requests per ``RATE_WINDOW`` seconds per token, as
  Pennylane allows, across every thread of the process and, given the ledger's URL
  (``ledger_url``), across every process sharing that ledger (a relay, a ``pennylane push``,
  several workers): the count then lives in the ledger database (``RateLimits``, one per ledger
  and process whatever the number of tokens).
  A ``429`` all the same is honoured under the edges' one retry policy (``THROTTLED_RETRY``,
  ``toporder_sync.retrying``): the token's limiter is paused until its ``Retry-After`` (every
  thread of the process waits) and the request is sent again, a few times at most; a longer
  wait is left to the outbox.
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

import hashlib
import json
import os
import threading
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
from toporder_sync.rate_limit import RateLimiter, RateLimits
from toporder_sync.retrying import RetryPolicy, retry_after_seconds

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
# A Retry-After longer than its patience, or more 429s in a row than its attempts allow, is not
# waited for here: the call fails as transient with the wait, and the outbox tries again after
# it. A 429 without a readable Retry-After backs off up to one window, what the limit is about.
THROTTLED_RETRY = RetryPolicy(attempts=4, backoff=1.0, max_backoff=RATE_WINDOW, patience=10.0)
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


# One limiter per (token fingerprint, ledger URL or None) in this process, every one of a ledger
# (or of none) counted by that ledger's one ``RateLimits``: a relay pushing for a thousand
# tokens holds one pool or sidecar connection and one leaker thread per ledger, not per token.
_limiters: dict[tuple[str, str | None], RateLimiter] = {}
_counts: dict[str | None, RateLimits] = {}
_limiters_lock = threading.Lock()


def token_fingerprint(token: str) -> str:
    """A stable, non-reversible name for a token (cache keys, limiter registry)."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def token_limiter() -> RateLimiter:
    """A new limiter at Pennylane's rate for one token (``limiter_for`` shares one per token)."""
    return RateLimiter(RATE_LIMIT, RATE_WINDOW + RATE_MARGIN)


def limiter_for(token: str, ledger_url: str | None = None) -> RateLimiter:
    """The process-wide limiter of ``token``: Pennylane counts requests per token.

    With ``ledger_url`` (the ledger's SQLAlchemy URL, password included) the limit is shared
    with every other process on that ledger; without, it holds for this process only. Either
    way each token counts on its own, and every token of one ledger (or of none) shares that
    ledger's one ``RateLimits``: its pool or connection and its one leaker thread.
    """
    key = (token_fingerprint(token), ledger_url)
    with _limiters_lock:
        limiter = _limiters.get(key)
        if limiter is None:
            counts = _counts.get(ledger_url)
            if counts is None:
                counts = _counts[ledger_url] = RateLimits(ledger_url)
            limiter = _limiters[key] = counts.limiter(_limit_name(token), RATE_LIMIT,
                                                      RATE_WINDOW + RATE_MARGIN)
        return limiter


def close_limiters() -> None:
    """Close and forget every limiter ``limiter_for`` made (their pools, files and threads)."""
    with _limiters_lock:
        counts = list(_counts.values())
        _counts.clear()
        _limiters.clear()
    for each in counts:
        each.close()


def _limit_name(token: str) -> str:
    return f"pennylane_{token_fingerprint(token)}"


# --- the client -------------------------------------------------------------------------------


class PennylaneClient:
    """One company's API, through its token. Close it (or use ``with``) when done.

    Its requests go through ``limiter`` if given, else through ``limiter_for(token,
    ledger_url)``: shared with every process on the ledger at ``ledger_url`` when there is one.
    Closing the client leaves that limiter open for the process's other clients of the token.
    """

    def __init__(self, token: str, *, ledger_url: str | None = None, url: str | None = None,
                 timeout: httpx.Timeout = DEFAULT_TIMEOUT, limiter: RateLimiter | None = None,
                 policy: RetryPolicy = THROTTLED_RETRY) -> None:
        if not token.strip():
            raise ConfigurationError("the Pennylane API token is empty")
        self.url = url or base_url()
        self._limiter = limiter if limiter is not None else limiter_for(token, ledger_url)
        self._policy = policy
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
        # A 429 was not carried out: wait as told, every user of the token, and send again.
        retrying = self._policy.retrying(_Throttled, sleep=self._limiter.pause)
        try:
            return retrying(self._send, method, path, params=params, json_body=json_body)
        except _Throttled as throttled:
            wait = RATE_WINDOW if throttled.retry_after is None else throttled.retry_after
            raise PennylaneUnavailable(
                f"{method} {path}: rate limited by Pennylane (retry after {wait:g} s)",
                uncertain=False, retry_after=wait) from None

    def _send(self, method: str, path: str, *, params: Mapping[str, str] | None,
              json_body: Mapping[str, Any] | None) -> httpx.Response:
        # Only a POST changes anything: a GET that failed half-way is simply not carried out.
        changes = method != "GET"
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
            raise _Throttled(retry_after_seconds(response.headers.get("retry-after"),
                                                 now=datetime.now(UTC)))
        if response.status_code >= 500:
            raise PennylaneUnavailable(
                f"{method} {path}: Pennylane failed with {response.status_code}",
                uncertain=changes)
        if response.status_code >= 400:
            raise PennylaneRejected(_refusal(method, path, response),
                                    status_code=response.status_code)
        return response


class _Throttled(ToporderSyncError):
    """A 429: not carried out, to send again after ``retry_after`` seconds (None: unsaid)."""

    def __init__(self, retry_after: float | None) -> None:
        super().__init__("HTTP 429")
        self.retry_after = retry_after


def _filter(*conditions: tuple[str, str, str]) -> str:
    return json.dumps([{"field": f, "operator": o, "value": v} for f, o, v in conditions])


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

"""The client of Toporder's closures API (``openapi/toporder-closures.yaml``), over httpx.

What it promises:

* ``ApiSettings.from_environment`` reads ``TOPORDER_API_URL`` and ``TOPORDER_API_TOKEN`` once,
  at start-up, and raises ``ConfigurationError`` naming the variable that is missing or wrong.
  The token never appears in a ``repr``, a log line or an error message.
* Every request has a timeout. A 429 or a 5xx is tried again under the edges' one retry
  policy (``toporder_sync.retrying``): after a jittered exponential backoff, never before the
  ``Retry-After`` the API asked for, a bounded number of times; so is a timeout or a dropped
  connection. What still fails, or asks for a wait longer than the policy's patience, is raised
  as ``TransientError``, which Prefect's task retry takes over with a longer breath.
* A body shorter than its ``Content-Length`` or that is not JSON is a ``TransientError``
  (a cut connection, a proxy's error page), never a half-read closure handed on.
* Every request of the process first passes one shared, thread-safe ``RateLimiter``
  (``TOPORDER_API_RATE`` requests per second, ``DEFAULT_RATE`` unless set), so that thousands
  of client-days run in parallel never hammer Toporder beyond what it allows.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from urllib.parse import quote, urlsplit

import httpx
from tenacity import RetryCallState

from toporder_sync.core import bounds
from toporder_sync.core.errors import ConfigurationError, TransientError
from toporder_sync.rate_limit import RateLimiter
from toporder_sync.retrying import RetryPolicy, retry_after_seconds

API_URL_ENV = "TOPORDER_API_URL"
API_TOKEN_ENV = "TOPORDER_API_TOKEN"  # noqa: S105 (the variable's name, not a token)
API_RATE_ENV = "TOPORDER_API_RATE"
# The header naming whose closure a push carries (``POST /v1/closures``, the receiver).
INTEGRATION_HEADER = "x-toporder-integration-id"
DEFAULT_RATE = 10.0
# Within one call: a few quick tries; a longer wait is left to Prefect's task retry.
PULL_RETRY = RetryPolicy(attempts=4, backoff=0.5, max_backoff=8.0, patience=30.0)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """Where the API is and how to authenticate; ``timeout`` bounds each read, in seconds."""

    base_url: str
    token: str = field(repr=False)
    timeout: float = 10.0

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> ApiSettings:
        env = os.environ if environ is None else environ
        url = env.get(API_URL_ENV, "").strip()
        token = env.get(API_TOKEN_ENV, "").strip()
        if not url:
            raise ConfigurationError(f"{API_URL_ENV} is not set: the base URL of Toporder's "
                                     "closures API is needed to pull closures")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigurationError(f"{API_URL_ENV}={url!r} is not an http(s) URL")
        if not token:
            raise ConfigurationError(f"{API_TOKEN_ENV} is not set: the bearer token of "
                                     "Toporder's closures API is needed to pull closures")
        return cls(url.rstrip("/"), token)


@functools.cache
def shared_limiter() -> RateLimiter:
    """The process's one rate limit towards Toporder (``TOPORDER_API_RATE`` per second)."""
    text = os.environ.get(API_RATE_ENV, "").strip()
    try:
        rate = float(text) if text else DEFAULT_RATE
    except ValueError:
        raise ConfigurationError(f"{API_RATE_ENV}={text!r} is not a number of requests per "
                                 "second") from None
    if not 0 < rate < float("inf"):
        raise ConfigurationError(f"{API_RATE_ENV}={text!r}: a rate limit must be positive")
    return RateLimiter.per_second(rate)


class _Retry(TransientError):
    """A failure worth another try within this call; raised out only as a TransientError."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class ToporderApi:
    """Closures pulled from Toporder; one instance per process is enough (httpx pools)."""

    def __init__(self, settings: ApiSettings, *, policy: RetryPolicy = PULL_RETRY,
                 limiter: RateLimiter | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self.policy = policy
        self.limiter = limiter if limiter is not None else shared_limiter()
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=settings.base_url,
            headers={"Authorization": f"Bearer {settings.token}",
                     "Accept": "application/json"},
            timeout=httpx.Timeout(settings.timeout, connect=min(settings.timeout, 5.0)),
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ToporderApi:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @staticmethod
    def closure_path(integration_id: str, business_date: date) -> str:
        return (f"/v1/integrations/{quote(integration_id, safe='')}/closures/"
                f"{business_date.isoformat()}")

    def closure(self, integration_id: str, business_date: date) -> bytes | None:
        """The raw closure of that day exactly as served, or None when Toporder has none yet."""
        path = self.closure_path(integration_id, business_date)
        tries = 0

        def log_retry(state: RetryCallState) -> None:
            failure = state.outcome.exception() if state.outcome else None
            log.info("Toporder API %s: %s; trying again in %.2f s (attempt %d of %d)", path,
                     failure, state.upcoming_sleep, state.attempt_number + 1,
                     self.policy.attempts)

        try:
            for attempt in self.policy.retrying(_Retry, sleep=self._sleep,
                                                before_sleep=log_retry):
                with attempt:
                    tries = attempt.retry_state.attempt_number
                    return self._get_closure(path)
        except _Retry as retry:
            raise TransientError(
                f"Toporder API {path}: {retry.reason}; gave up after {tries} attempt(s)"
                + (f", Retry-After {retry.retry_after:g} s" if retry.retry_after is not None
                   else "")
            ) from None
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _get_closure(self, path: str) -> bytes | None:
        self.limiter.acquire()
        try:
            response = self._http.get(path)
        except httpx.TimeoutException as exc:
            raise _Retry(f"timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            # A connection cut mid-body (fewer bytes than Content-Length) lands here too.
            raise _Retry(f"connection failed ({type(exc).__name__}: {exc})") from None
        status = response.status_code
        if status == httpx.codes.NOT_FOUND:
            return None
        if status == httpx.codes.TOO_MANY_REQUESTS or status >= 500:
            raise _Retry(f"HTTP {status}", retry_after_seconds(
                response.headers.get("retry-after"), now=datetime.now(UTC)))
        if status in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN):
            raise ConfigurationError(f"Toporder API {path}: HTTP {status}: {API_TOKEN_ENV} "
                                     "was refused")
        if status != httpx.codes.OK:
            raise ConfigurationError(f"Toporder API {path}: unexpected HTTP {status}; check "
                                     f"{API_URL_ENV}")
        return _complete_json(response)


def _complete_json(response: httpx.Response) -> bytes:
    """The body, if it is whole and JSON; a cut or garbled body is worth another try."""
    body = response.content
    declared = response.headers.get("content-length")
    if (declared is not None and declared.isdigit()
            and "content-encoding" not in response.headers and int(declared) != len(body)):
        raise _Retry(f"truncated body: {len(body)} bytes of {declared}")
    try:
        # A number too long to convert (5,000 digits) is whole JSON all the same: the reader's
        # to refuse (``core.bounds``), not a garbled body to fetch again.
        json.loads(body, parse_int=bounds.parse_int, parse_float=bounds.parse_float)
    except (UnicodeDecodeError, ValueError):
        raise _Retry(f"body of {len(body)} bytes is not JSON (truncated or garbled)") from None
    return body


@functools.cache
def _api_for(settings: ApiSettings) -> ToporderApi:
    return ToporderApi(settings)


def default_api() -> ToporderApi:
    """The process's client for the API of ``TOPORDER_API_URL`` (ConfigurationError if unset)."""
    return _api_for(ApiSettings.from_environment())

"""The one retry policy of the HTTP edges, over tenacity, and the one ``Retry-After`` reader.

What it promises:

* ``RetryPolicy.delay(attempt, retry_after)`` is the wait after the ``attempt``-th failure
  (1 for the first): exponential from ``backoff``, capped at ``max_backoff``, with "equal
  jitter" (a random point in the upper half of the exponential step, so that calls failed
  together do not all come back together, yet none comes back at once), and never shorter than
  a ``Retry-After`` the server gave, which is honoured up to ``max_retry_after`` (a longer one
  is more likely a mistake than a plan).
* ``RetryPolicy.retrying`` runs that policy in-process (tenacity's ``Retrying``): at most
  ``attempts`` tries, the first included; a wait longer than ``patience`` is not slept
  through (a worker thread would sit idle), the loop gives up at once and the caller's outer
  retry (Prefect's task retry, the outbox) comes back later. Its ``sleep`` is injectable, so
  tests record waits instead of sleeping them.
* The outbox computes the next attempt time it stores from ``delay`` too: one definition of
  backoff whether the wait is slept or persisted.
* ``retry_after_seconds`` reads a ``Retry-After`` value (RFC 9110 §10.2.3): delta-seconds or an
  HTTP date; absent or unreadable is None.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import tenacity
from tenacity.wait import wait_base, wait_exponential, wait_random_exponential

# A Retry-After beyond this is cut to it: six hours is longer than any planned maintenance
# window a receiver would announce this way.
MAX_RETRY_AFTER = 6 * 3600.0


def retry_after_seconds(value: str | None, *, now: datetime) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3).

    A date in the past is 0; an absent, empty or unreadable value is None.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and after how long a failed call is tried again; times in seconds.

    ``attempts`` counts every try, the first included. ``patience``: the longest wait slept
    through in-process (None: any); see the module docstring.
    """

    attempts: int = 4
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = MAX_RETRY_AFTER
    patience: float | None = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.backoff <= 0 or self.max_backoff < self.backoff:
            raise ValueError(f"a retry policy needs attempts >= 1 and 0 < backoff <= "
                             f"max_backoff, not {self}")

    def wait(self) -> wait_base:
        """The jittered exponential backoff, as a tenacity wait strategy.

        The sum of a fixed half and a random half of the same exponential step: a wait in
        ``[step / 2, step)``, ``step`` doubling from ``backoff`` up to ``max_backoff``.
        """
        half, cap = self.backoff / 2, self.max_backoff / 2
        return (wait_exponential(multiplier=half, max=cap)
                + wait_random_exponential(multiplier=half, max=cap))

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the ``attempt``-th failed try (1 for the first)."""
        state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
        state.attempt_number = max(1, attempt)
        return self._honour(self.wait()(state), retry_after)

    def _honour(self, backoff: float, retry_after: float | None) -> float:
        if retry_after is None:
            return backoff
        return max(backoff, min(retry_after, self.max_retry_after))

    def retrying(self, retry_on: type[BaseException],
                 sleep: Callable[[float], None] = time.sleep,
                 before_sleep: Callable[[tenacity.RetryCallState], None] | None = None,
                 ) -> tenacity.Retrying:
        """A tenacity loop retrying ``retry_on`` under this policy; the last failure is
        re-raised as it is.

        A ``retry_after`` attribute of the exception (seconds, or None) is honoured.
        """
        return tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(retry_on), wait=self._wait_honouring(),
            stop=self._stop, sleep=sleep, before_sleep=before_sleep, reraise=True)

    def async_retrying(self, retry_on: type[BaseException],
                       sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                       before_sleep: Callable[[tenacity.RetryCallState], None] | None = None,
                       ) -> tenacity.AsyncRetrying:
        """``retrying`` for a coroutine: the same policy, the waits awaited."""
        return tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception_type(retry_on), wait=self._wait_honouring(),
            stop=self._stop, sleep=sleep, before_sleep=before_sleep, reraise=True)

    def _wait_honouring(self) -> Callable[[tenacity.RetryCallState], float]:
        """The backoff, never shorter than the ``retry_after`` (seconds) of the failure."""
        backoff = self.wait()

        def wait(state: tenacity.RetryCallState) -> float:
            failure = state.outcome.exception() if state.outcome else None
            retry_after: float | None = getattr(failure, "retry_after", None)
            return self._honour(backoff(state), retry_after)

        return wait

    def _stop(self, state: tenacity.RetryCallState) -> bool:
        return state.attempt_number >= self.attempts or (
            self.patience is not None and state.upcoming_sleep > self.patience)

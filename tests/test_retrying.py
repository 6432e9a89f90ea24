"""The edges' one retry policy and ``Retry-After`` reader (``toporder_sync.retrying``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from toporder_sync.retrying import MAX_RETRY_AFTER, RetryPolicy, retry_after_seconds

NOW = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)


@pytest.mark.parametrize(("value", "seconds"), [
    ("12", 12.0),
    (" 12 ", 12.0),
    ("0", 0.0),
    ("Sat, 28 Nov 2026 07:00:30 GMT", 30.0),
    ("Sat, 28 Nov 2026 06:00:00 GMT", 0.0),  # a date in the past: at once
    ("soon", None),
    ("-5", None),
    ("1.5", None),
    ("\u0661\u0662", None),  # Arabic-Indic digits are not delta-seconds
    ("", None),
    (None, None),
])
def test_retry_after_is_delta_seconds_or_an_http_date(value: str | None,
                                                      seconds: float | None) -> None:
    assert retry_after_seconds(value, now=NOW) == seconds


POLICY = RetryPolicy(attempts=4, backoff=1.0, max_backoff=8.0, patience=5.0)


@pytest.mark.parametrize(("attempt", "low", "high"), [
    (1, 0.5, 1.0), (2, 1.0, 2.0), (3, 2.0, 4.0), (4, 4.0, 8.0), (5, 4.0, 8.0), (60, 4.0, 8.0),
])
def test_delay_doubles_with_jitter_up_to_a_cap(attempt: int, low: float, high: float) -> None:
    waits = [POLICY.delay(attempt) for _ in range(200)]
    assert all(low <= wait <= high for wait in waits)
    assert len(set(waits)) > 100  # jittered, not one value


def test_delay_is_never_before_retry_after_and_caps_it() -> None:
    assert POLICY.delay(1, retry_after=30.0) == 30.0
    assert 0.5 <= POLICY.delay(1, retry_after=0.0) <= 1.0
    assert POLICY.delay(1, retry_after=10 * MAX_RETRY_AFTER) == MAX_RETRY_AFTER


class Failure(Exception):
    def __init__(self, retry_after: float | None = None) -> None:
        super().__init__("failed")
        self.retry_after = retry_after


def test_retrying_sleeps_between_attempts_then_raises_the_last_failure() -> None:
    slept: list[float] = []
    calls: list[int] = []

    def fail() -> None:
        calls.append(1)
        raise Failure(retry_after=2.0 if len(calls) == 1 else None)

    with pytest.raises(Failure):
        POLICY.retrying(Failure, sleep=slept.append)(fail)
    assert len(calls) == 4
    assert slept[0] == 2.0 and 1.0 <= slept[1] <= 2.0 and 2.0 <= slept[2] <= 4.0


def test_retrying_gives_up_at_once_rather_than_wait_past_its_patience() -> None:
    slept: list[float] = []
    calls: list[int] = []

    def fail() -> None:
        calls.append(1)
        raise Failure(retry_after=60.0)

    with pytest.raises(Failure):
        POLICY.retrying(Failure, sleep=slept.append)(fail)
    assert (len(calls), slept) == (1, [])


def test_retrying_lets_other_errors_through_untried() -> None:
    calls: list[int] = []

    def fail() -> None:
        calls.append(1)
        raise ValueError("not transient")

    with pytest.raises(ValueError, match="not transient"):
        POLICY.retrying(Failure, sleep=lambda _: None)(fail)
    assert len(calls) == 1


@pytest.mark.parametrize("fields", [{"attempts": 0}, {"backoff": 0.0},
                                    {"backoff": 2.0, "max_backoff": 1.0}])
def test_a_policy_that_cannot_work_is_refused(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="retry policy"):
        RetryPolicy(**fields)  # type: ignore[arg-type]

"""Which business days may be posted: never before activation, never before the day is over.

Pennylane's rule for Toporder: sales dated before the activation date can never be received.
A business day is over at midnight at its end in the client's timezone; before that the
closure may still change, so posting it would be posting a guess.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def day_end(business_date: date, timezone: str) -> datetime:
    """The first instant after the business day, in the client's timezone."""
    return datetime.combine(business_date + timedelta(days=1), time(0), tzinfo=ZoneInfo(timezone))


def refusal(business_date: date, *, activated_on: date, timezone: str, now: datetime) -> str | None:
    """Why this day must not be posted, or None when it may be."""
    if business_date < activated_on:
        return (f"{business_date} is before the activation date {activated_on}: sales dated "
                "before activation are never received nor posted")
    if now < day_end(business_date, timezone):
        return (f"{business_date} is not over yet in {timezone} (it ends at "
                f"{day_end(business_date, timezone).isoformat()}): run it after that")
    return None


def previous_business_day(scheduled: datetime, timezone: str) -> date:
    """The day a daily run processes: the day before its scheduled time, in the client's zone."""
    return scheduled.astimezone(ZoneInfo(timezone)).date() - timedelta(days=1)


def closure_deadline(business_date: date, timezone: str, deadline_hour: int) -> datetime:
    """Until when a missing closure is waited for: ``deadline_hour`` local time the next day."""
    return datetime.combine(business_date + timedelta(days=1), time(deadline_hour),
                            tzinfo=ZoneInfo(timezone))


def awaiting_closure(business_date: date, *, timezone: str, deadline_hour: int,
                     now: datetime) -> bool:
    """Whether a day without a closure is still waited for rather than flagged missing."""
    return now < closure_deadline(business_date, timezone, deadline_hour)

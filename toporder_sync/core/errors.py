"""Errors are data with a destination.

A ``Finding`` is one problem or warning about one client-day: the rule it breaks, the field it
names, a message a person can act on, and a ``Category`` that says who must act:

* ``POS``: Toporder must correct and resend the closure (debit ≠ credit, wrong VAT rate…);
* ``LEDGER``: to fix on our side (a near-miss mapping, a mapping to an invalid account…);
* ``WARNING``: the day is posted anyway, but someone must look (a method sent to 471000, a gap
  in closure numbers);
* ``REFUSED``: the day must not run at all (before activation, not over yet): nobody has
  anything to fix, the request itself was wrong;
* ``INTERNAL``: the run failed on something unexpected (a bug, a misconfiguration): neither the
  closure nor a mapping is at fault; the data team must look (``internal_error``).

Transient failures (I/O, a locked database, HTTP 429/5xx) are a third kind of problem, the only
one ever retried: they are raised as ``TransientError``, never recorded as findings.

Every exception of the project derives from ``ToporderSyncError``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Category(StrEnum):
    POS = "pos"
    LEDGER = "ledger"
    WARNING = "warning"
    REFUSED = "refused"
    INTERNAL = "internal"


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem found in a client-day, ready to be recorded and reported."""

    category: Category
    rule: str
    field: str
    message: str

    @property
    def is_error(self) -> bool:
        return self.category is not Category.WARNING

    def as_dict(self) -> dict[str, str]:
        return {
            "category": self.category.value,
            "rule": self.rule,
            "field": self.field,
            "message": self.message,
        }


def pos_error(rule: str, field: str, message: str) -> Finding:
    return Finding(Category.POS, rule, field, message)


def ledger_error(rule: str, field: str, message: str) -> Finding:
    return Finding(Category.LEDGER, rule, field, message)


def warning(rule: str, field: str, message: str) -> Finding:
    return Finding(Category.WARNING, rule, field, message)


def refused(rule: str, field: str, message: str) -> Finding:
    return Finding(Category.REFUSED, rule, field, message)


# How much of an unexpected error's message a finding keeps.
_MAX_ERROR_MESSAGE = 500


def internal_error(exc: BaseException) -> Finding:
    """The finding of a run that failed unexpectedly: the error's type and message, as text any
    database stores (no NUL, no lone surrogate), cut to ``_MAX_ERROR_MESSAGE`` characters."""
    text = f"{type(exc).__name__}: {exc}".replace("\x00", "\\x00")
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > _MAX_ERROR_MESSAGE:
        text = text[:_MAX_ERROR_MESSAGE - 1] + "…"
    return Finding(Category.INTERNAL, "internal_error", "run", text)


def error_category(findings: Iterable[Finding]) -> Category | None:
    """The category of a day: POS wins over LEDGER (a bad closure must be resent first)."""
    categories = {f.category for f in findings if f.is_error}
    if Category.POS in categories:
        return Category.POS
    if Category.LEDGER in categories:
        return Category.LEDGER
    return None


class ToporderSyncError(Exception):
    """Base of every error this project raises on purpose."""


class ClosureRejected(ToporderSyncError):
    """A closure that cannot be read at all (not UTF-8, not JSON, not the v1 format…)."""

    def __init__(self, source: str, findings: Iterable[Finding]) -> None:
        self.source = source
        self.findings = tuple(findings)
        lines = "; ".join(f"{f.field}: {f.message}" for f in self.findings)
        super().__init__(f"{source}: closure refused: {lines}")


class RefusedError(ToporderSyncError):
    """A request that must not be carried out: a day before activation, an unknown client…"""


class ConfigurationError(ToporderSyncError):
    """A setting or a mapping that is not valid (caught when it is set, or at start-up)."""


class TransientError(ToporderSyncError):
    """A failure that may pass if tried again (I/O, a locked database, HTTP 429/5xx)."""


class MissingClosureError(ToporderSyncError):
    """No closure was received for the client-day."""

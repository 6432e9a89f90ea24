"""What every ``toporder-sync`` command module shares: the ledger, the clock, dates, errors.

``errors()`` turns the project's exceptions into a message on stderr and the documented exit
code (see ``toporder_sync.cli``): a refused closure 1, bad usage or configuration 2, a refusal 3.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime

import click
from sqlalchemy import Engine

from toporder_sync.core.errors import ClosureRejected, ConfigurationError, RefusedError
from toporder_sync.ledger.db import database_url, get_engine, upgrade
from toporder_sync.runner import EXIT_FLAGGED, EXIT_REFUSED, EXIT_USAGE


def engine() -> Engine:
    """The ledger of TOPORDER_SYNC_DATABASE_URL, its schema upgraded."""
    ledger = get_engine(database_url())
    upgrade(ledger)
    return ledger


def now() -> datetime:
    return datetime.now(UTC)


@contextmanager
def errors() -> Iterator[None]:
    """Turn the project's errors into a message on stderr and the documented exit code."""
    try:
        yield
    except ClosureRejected as exc:
        for finding in exc.findings:
            click.echo(f"error: {exc.source}: {finding.field}: {finding.message}", err=True)
        sys.exit(EXIT_FLAGGED)
    except RefusedError as exc:
        click.echo(f"refused: {exc}", err=True)
        sys.exit(EXIT_REFUSED)
    except ConfigurationError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)


def day(_ctx: click.Context, _param: click.Parameter, value: str | None) -> date | None:
    """A click callback reading a YYYY-MM-DD option."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a date YYYY-MM-DD") from exc

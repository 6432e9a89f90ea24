"""What every ``toporder-sync`` command module shares: the ledger, the clock, dates, errors.

``errors()`` turns the project's exceptions into a message on stderr and the documented exit
code (``toporder_sync.outcome``): a refused closure 1, bad usage or configuration 2, a refusal
3, a ledger or service still unavailable 8. ``GuardedGroup`` does the same for any command,
and turns whatever else escapes (a bug) into one line and exit 7, the traceback shown only with
``--debug`` (or ``TOPORDER_SYNC_DEBUG=1``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime

import click
from sqlalchemy import Engine

from toporder_sync.core.errors import (
    ClosureRejected,
    ConfigurationError,
    RefusedError,
    TransientError,
)
from toporder_sync.ledger.db import database_url, get_engine, upgrade
from toporder_sync.outcome import (
    EXIT_FLAGGED,
    EXIT_INTERNAL,
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
)
from toporder_sync.runner import DEBUG_ENV


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
    except TransientError as exc:
        click.echo(f"unavailable: {exc}; try again later", err=True)
        sys.exit(EXIT_UNAVAILABLE)


def debugging() -> bool:
    """Whether a bug shows its traceback (``--debug``, or ``TOPORDER_SYNC_DEBUG=1``)."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


class GuardedGroup(click.Group):
    """The command line's root: no command ends in a traceback unless asked to.

    The project's errors get their documented message and exit code (``errors``); anything
    else is a bug: one line naming the command and the error, exit 7 (``EXIT_INTERNAL``), and
    the traceback only with ``--debug``. Ctrl-C is one line and exit 130.
    """

    def invoke(self, ctx: click.Context) -> object:
        try:
            with errors():
                return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort,
                SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Exception as exc:
            if debugging():
                raise
            command = ctx.invoked_subcommand or ctx.info_name or "toporder-sync"
            message = str(exc).splitlines()[0] if str(exc) else ""
            click.echo(f"error: {command}: {type(exc).__name__}"
                       + (f": {message}" if message else "")
                       + " (an internal error; --debug shows the traceback)", err=True)
            sys.exit(EXIT_INTERNAL)


def day(_ctx: click.Context, _param: click.Parameter, value: str | None) -> date | None:
    """A click callback reading a YYYY-MM-DD option."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a date YYYY-MM-DD") from exc

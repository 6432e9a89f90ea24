"""Connecting to the ledger database, migrating it, and running one transaction.

Promises:

* ``make_engine`` gives an engine on which two processes working on the same client-day
  serialize instead of failing: on SQLite every transaction starts with ``BEGIN IMMEDIATE``
  (the write lock is taken up front, and waited for up to 30 s), on PostgreSQL the ledger
  takes row locks (``journal.lock_client_day``).
* ``upgrade`` brings the schema to the latest migration; it is idempotent and safe to run at
  every start-up, from several processes at once.
* ``session_scope`` and ``transaction`` are the one place that commits. Both turn a transient
  database failure (a lock, a serialization failure, a lost connection) into
  ``TransientError``, the only kind of error the orchestrator retries.
"""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any, TypeAlias, TypeVar, cast

import tenacity
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.orm import Session

from toporder_sync.core.errors import ConfigurationError, TransientError

DATABASE_URL_ENV = "TOPORDER_SYNC_DATABASE_URL"
DEFAULT_DATABASE_FILE = "toporder-sync.db"

# Key of the PostgreSQL advisory lock that serializes concurrent migrations (any fixed bigint
# unique to this application; these are the bytes of "toporder").
_MIGRATION_LOCK_KEY = 0x746F706F72646572

# How SQLite commits: FULL waits until the write-ahead log is on disk.
_SQLITE_SYNCHRONOUS = "FULL"

# SQLite result codes of a lock held by another connection (extended codes share the prefix).
_SQLITE_LOCK_CODES = ("SQLITE_BUSY", "SQLITE_LOCKED")


def database_url() -> str:
    """The ledger's URL: ``$TOPORDER_SYNC_DATABASE_URL``, else ``./toporder-sync.db``."""
    url = os.environ.get(DATABASE_URL_ENV)
    if url is None:
        return "sqlite:///" + str(Path(DEFAULT_DATABASE_FILE).resolve())
    if not url.strip():
        raise ConfigurationError(f"{DATABASE_URL_ENV} is set but empty")
    return url


def make_engine(url: str) -> Engine:
    """A new engine for a SQLite file or a ``postgresql+psycopg://`` server."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError(f"{DATABASE_URL_ENV}: not a database URL: {exc}") from exc
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        engine = create_engine(parsed)
        event.listen(engine, "connect", _configure_sqlite_connection)
        # Every transaction begins with BEGIN IMMEDIATE, which the dialect sends on the driver's
        # connection. SQLAlchemy's recipe sends it from a "begin" event; but an engine with any
        # event of its own dispatches every statement's (empty) events too, work spent on
        # nothing for every statement of every client-day.
        engine.dialect.do_begin = _begin_immediate  # type: ignore[method-assign]
        return engine
    if parsed.drivername == "postgresql+psycopg":
        return create_engine(parsed, pool_pre_ping=True)
    raise ConfigurationError(
        f"{DATABASE_URL_ENV}: unsupported database {parsed.drivername!r}; "
        "use sqlite:///<path> or postgresql+psycopg://<user>@<host>/<database>"
    )


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    # isolation_level=None stops the sqlite3 module from issuing its own (deferred) BEGIN, so
    # that _begin_immediate controls how every transaction starts (SQLAlchemy's documented
    # recipe). busy_timeout comes first so that switching to WAL waits for a lock as well.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.execute("PRAGMA foreign_keys = ON")
        _switch_to_wal(cursor)
        # Every commit waits for the disk, but where a transaction says otherwise (transaction).
        cursor.execute(f"PRAGMA synchronous = {_SQLITE_SYNCHRONOUS}")
    finally:
        cursor.close()


def _database_locked(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


# Switching a fresh file to WAL needs an exclusive lock, and SQLite does not always call the
# busy handler for it: two processes opening a new ledger at once can see "database is locked"
# here. Waiting a little and trying again is all it takes.
@tenacity.retry(retry=tenacity.retry_if_exception(_database_locked),
                wait=tenacity.wait_fixed(0.05), stop=tenacity.stop_after_attempt(100),
                reraise=True)
def _switch_to_wal(cursor: Any) -> None:
    cursor.execute("PRAGMA journal_mode = WAL")


def _begin_immediate(dbapi_connection: Any) -> None:
    # A deferred BEGIN would let two writers both read, then fail on upgrading to a write lock
    # ("database is locked" without waiting); IMMEDIATE makes the second one wait its turn.
    dbapi_connection.execute("BEGIN IMMEDIATE")


@functools.cache
def _shared_engine(url: str) -> Engine:
    return make_engine(url)


def get_engine(url: str | None = None) -> Engine:
    """The engine of this process for ``url`` (default: ``database_url()``), made once."""
    return _shared_engine(url if url is not None else database_url())


def alembic_config(url: str) -> Config:
    """An Alembic configuration for the packaged migrations, without any alembic.ini."""
    config = Config()
    # By package name: migrations/ is installed as toporder_sync.migrations, a plain directory.
    config.set_main_option("script_location", str(files("toporder_sync.migrations")))
    # ConfigParser interpolation would read a '%' of a URL-encoded password as a reference.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(engine: Engine) -> None:
    """Migrate the database to the latest revision (nothing to do if it already is).

    The whole upgrade runs in one transaction that first takes a lock (the SQLite write lock
    of BEGIN IMMEDIATE, a PostgreSQL advisory lock), so a second process starting at the same
    moment waits, then finds the schema up to date.
    """
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
            )
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


# What the ledger runs its statements on: a ``Session`` (``session_scope``) where rows are
# read or written as ORM objects, a ``Connection`` (``transaction``) where only statements are
# run. Both take the same statements and give the same rows.
Executor: TypeAlias = Session | Connection


def dialect_name(executor: Executor) -> str:
    """``"sqlite"`` or ``"postgresql"``: the database behind a session or a connection."""
    if isinstance(executor, Connection):
        return executor.dialect.name
    return executor.get_bind().dialect.name


def dialect_insert(dialect: str, table: type[Any] | Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that can say ON CONFLICT, in the dialect named (``dialect_name``)."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_for(executor: Executor, table: type[Any] | Table) -> postgresql.Insert | sqlite.Insert:
    """``dialect_insert`` for the database behind a session or a connection."""
    return dialect_insert(dialect_name(executor), table)


_T = TypeVar("_T")


def for_dialect(executor: Executor, build: Callable[[str], _T]) -> _T:
    """What ``build`` makes for the database behind a session or a connection.

    ``build`` takes a dialect name; the ledger's are ``functools.cache``d, so that a statement
    that differs by database is built once per dialect and only executed per call.
    """
    return build(dialect_name(executor))


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: committed at the end of the block, rolled back on any exception."""
    with _transient_errors(), Session(engine) as session, session.begin():
        yield session


@contextmanager
def transaction(engine: Engine, *, durable: bool = True) -> Iterator[Connection]:
    """``session_scope`` on a ``Connection``, for the transactions that only run statements.

    The transactions of every client-day (``service.claim_and_admit``, ``post``, ``flag``) use
    it: a statement and a transaction run on a connection skip the ``Session``'s unit of work
    and identity map, which such transactions never use.

    ``durable=False``: the commit does not wait for the disk, for this transaction only
    (SQLite's ``synchronous = NORMAL``, PostgreSQL's ``synchronous_commit = off``). A power cut
    or an OS crash may then undo the transaction, whole, but no durable one committed after it:
    both databases write their log in order, and a durable commit flushes what precedes it.
    It is for what is taken again when lost, a client-day's claim, never for what the ledger
    records.
    """
    with _transient_errors(), engine.connect() as connection:
        # On SQLite, outside a transaction (SQLite refuses it inside) and on the driver's
        # connection (through SQLAlchemy, a statement would begin one); set back below.
        driver = (cast("sqlite3.Connection", connection.connection.driver_connection)
                  if not durable and connection.dialect.name == "sqlite" else None)
        if driver is not None:
            driver.execute("PRAGMA synchronous = NORMAL")
        try:
            with connection.begin():
                if not durable and driver is None:
                    connection.exec_driver_sql("SET LOCAL synchronous_commit TO off")
                yield connection
        finally:
            if driver is not None:
                try:
                    driver.execute(f"PRAGMA synchronous = {_SQLITE_SYNCHRONOUS}")
                except sqlite3.Error:
                    connection.invalidate()  # closed, rather than pooled without waiting


@contextmanager
def _transient_errors() -> Iterator[None]:
    """A transient database failure becomes ``TransientError``; anything else passes."""
    try:
        yield
    except DBAPIError as exc:
        if _is_transient(exc):
            raise TransientError(f"database temporarily unavailable: {exc.orig}") from exc
        raise


def _is_transient(exc: DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError):
        return False
    # sqlite3 reports "no such table" or a syntax error as OperationalError too: only a lock
    # is worth retrying. On PostgreSQL, OperationalError is a lost connection, a serialization
    # failure or a deadlock (psycopg's TransactionRollback), all of which may pass.
    sqlite_code = getattr(exc.orig, "sqlite_errorname", None)
    return sqlite_code is None or sqlite_code.startswith(_SQLITE_LOCK_CODES)

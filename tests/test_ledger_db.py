"""The ledger database: URL, engine settings, migrations, transactions and their failures."""

from __future__ import annotations

import multiprocessing
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, Engine, event, inspect, text
from sqlalchemy.exc import IntegrityError

from toporder_sync.core.errors import ConfigurationError, TransientError
from toporder_sync.ledger.clients import list_clients
from toporder_sync.ledger.db import (
    DATABASE_URL_ENV,
    Executor,
    alembic_config,
    database_url,
    get_engine,
    make_engine,
    session_scope,
    transaction,
    upgrade,
)
from toporder_sync.ledger.tables import Base

Scope = Callable[[Engine], AbstractContextManager[Executor]]

LEDGER_TABLES = {
    "clients",
    "mappings",
    "closures",
    "client_days",
    "entries",
    "entry_lines",
    "methods_seen",
}


def test_database_url_defaults_to_a_file_in_the_current_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert database_url() == f"sqlite:///{tmp_path.resolve() / 'toporder-sync.db'}"


def test_database_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATABASE_URL_ENV, "postgresql+psycopg://ledger@db.internal/ledger")
    assert database_url() == "postgresql+psycopg://ledger@db.internal/ledger"


def test_an_empty_database_url_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATABASE_URL_ENV, " ")
    with pytest.raises(ConfigurationError, match=DATABASE_URL_ENV):
        database_url()


@pytest.mark.parametrize(
    "url", ["not a url", "mysql://ledger@localhost/ledger", "postgresql://ledger@localhost/x"]
)
def test_unsupported_urls_are_refused_at_start_up(url: str) -> None:
    with pytest.raises(ConfigurationError, match=DATABASE_URL_ENV):
        make_engine(url)


def test_get_engine_makes_one_engine_per_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    engine = get_engine(url)
    assert get_engine(url) is engine
    assert get_engine(f"sqlite:///{tmp_path / 'other.db'}") is not engine


def test_sqlite_connections_enforce_foreign_keys_in_wal_mode(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'pragmas.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 30000
    engine.dispose()


def test_upgrade_creates_the_schema_of_the_tables_module_and_is_idempotent(
    ledger_url: str,
) -> None:
    engine = make_engine(ledger_url)
    upgrade(engine)
    upgrade(engine)
    with engine.connect() as connection:
        assert set(inspect(connection).get_table_names()) >= LEDGER_TABLES
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert version == "0007"
    engine.dispose()


def test_method_names_have_a_byte_for_byte_collation(engine: Engine) -> None:
    # SQLite's default collation (BINARY) already compares bytes; PostgreSQL's may not.
    expected = "C" if engine.dialect.name == "postgresql" else None
    with engine.connect() as connection:
        inspector = inspect(connection)
        for table, column in (("mappings", "method"), ("methods_seen", "name")):
            (found,) = [c for c in inspector.get_columns(table) if c["name"] == column]
            assert getattr(found["type"], "collation", None) == expected, (table, column)


def test_downgrade_to_base_removes_everything_and_upgrade_restores_it(ledger_url: str) -> None:
    engine = make_engine(ledger_url)
    upgrade(engine)
    command.downgrade(alembic_config(ledger_url), "base")
    with engine.connect() as connection:
        assert not LEDGER_TABLES & set(inspect(connection).get_table_names())
    upgrade(engine)
    with session_scope(engine) as session:
        assert list_clients(session) == []
    engine.dispose()


def _upgrade_in_a_process(url: str, barrier: Barrier) -> None:
    engine = make_engine(url)
    barrier.wait(timeout=60)
    upgrade(engine)
    engine.dispose()


@pytest.mark.timeout(120)
def test_concurrent_upgrades_of_a_fresh_database_all_succeed(ledger_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    processes = [
        context.Process(target=_upgrade_in_a_process, args=(ledger_url, barrier)) for _ in range(2)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=100)
    assert [process.exitcode for process in processes] == [0, 0]
    engine = make_engine(ledger_url)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    engine.dispose()


# A transaction on a session or on a connection: the same promises.
SCOPES = pytest.mark.parametrize("scope", [session_scope, transaction],
                                 ids=["session_scope", "transaction"])


@SCOPES
def test_a_transaction_commits_at_the_end(engine: Engine, client_id: str, scope: Scope) -> None:
    with scope(engine) as db:
        db.execute(text("UPDATE clients SET name = 'Renamed'"))
    with session_scope(engine) as session:
        assert [(c.client_id, c.name) for c in list_clients(session)] == [(client_id, "Renamed")]


@SCOPES
def test_a_transaction_rolls_back_on_an_exception(engine: Engine, client_id: str,
                                                  scope: Scope) -> None:
    with pytest.raises(RuntimeError), scope(engine) as db:
        db.execute(text("UPDATE clients SET name = 'Renamed'"))
        raise RuntimeError("stop")
    with session_scope(engine) as session:
        assert [client.name for client in list_clients(session)] == ["Le Petit Zinc"]


def _commit_waits_for_disk(db: Connection) -> bool:
    if db.dialect.name == "sqlite":
        return db.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    return db.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"


def test_a_transaction_waits_for_the_disk_unless_told_not_to_for_itself_only(
    engine: Engine, client_id: str
) -> None:
    with transaction(engine) as db:
        if db.dialect.name == "postgresql":  # the test cluster never waits; this connection will
            db.exec_driver_sql("SET synchronous_commit TO on")
        driver = db.connection.dbapi_connection
        assert _commit_waits_for_disk(db)
    with transaction(engine, durable=False) as db:
        assert db.connection.dbapi_connection is driver
        assert not _commit_waits_for_disk(db)
        db.execute(text("UPDATE clients SET name = 'Renamed'"))
    with pytest.raises(RuntimeError), transaction(engine, durable=False) as db:
        assert not _commit_waits_for_disk(db)
        raise RuntimeError("stop")
    for scope in (transaction, session_scope):
        with scope(engine) as after:
            connection = after if isinstance(after, Connection) else after.connection()
            # The same pooled connection: the setting did not outlive its transaction.
            assert connection.connection.dbapi_connection is driver
            assert _commit_waits_for_disk(connection)
    with session_scope(engine) as session:
        assert [client.name for client in list_clients(session)] == ["Renamed"]


@SCOPES
def test_an_integrity_error_is_not_transient(engine: Engine, client_id: str, now: datetime,
                                             scope: Scope) -> None:
    with pytest.raises(IntegrityError), scope(engine) as db:
        db.execute(
            text(
                "INSERT INTO mappings (client_id, method, account, updated_at) "
                "VALUES ('nobody', 'CB', '511500', :now)"
            ),
            {"now": now},
        )


@SCOPES
def test_a_locked_sqlite_database_is_a_transient_error(tmp_path: Path, scope: Scope) -> None:
    url = f"sqlite:///{tmp_path / 'locked.db'}"
    engine = make_engine(url)
    upgrade(engine)

    @event.listens_for(engine, "connect")
    def wait_briefly(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout = 100")

    engine.dispose()
    holder = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(TransientError) as raised, scope(engine) as db:
            db.execute(text("SELECT client_id FROM clients"))
        assert "database is locked" in str(raised.value.__cause__)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        engine.dispose()


@pytest.mark.postgres
@SCOPES
def test_a_lost_postgresql_connection_is_a_transient_error(
    postgres_server: str, postgres_admin: Engine, scope: Scope
) -> None:
    with postgres_admin.connect() as admin:
        admin.exec_driver_sql('CREATE DATABASE "lost_connection"')
    engine = make_engine(f"{postgres_server}/lost_connection")
    try:
        with pytest.raises(TransientError), scope(engine) as db:
            db.execute(text("SELECT 1"))
            with postgres_admin.connect() as admin:
                admin.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = 'lost_connection' AND pid <> pg_backend_pid()"
                    )
                )
            db.execute(text("SELECT 1"))
    finally:
        engine.dispose()
        with postgres_admin.connect() as admin:
            admin.exec_driver_sql('DROP DATABASE "lost_connection" WITH (FORCE)')

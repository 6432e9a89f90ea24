"""Shared fixtures: a throwaway PostgreSQL 15 cluster, and a migrated ledger on each backend.

``ledger_url`` runs a test twice: on a SQLite file and on a fresh PostgreSQL database (marked
``postgres``). The cluster is started once per session from the PostgreSQL 15 binaries; if they
are missing the tests fail, they are never skipped (a skipped backend is an untested backend).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine

from toporder_sync.core.model import Entry, EntryLine
from toporder_sync.ledger.clients import activate_client
from toporder_sync.ledger.db import make_engine, session_scope, upgrade
from toporder_sync.ledger.inbox import StoreResult, store_closure

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "postgres"

NOW = datetime(2026, 11, 28, 5, 30, tzinfo=UTC)
BUSINESS_DAY = date(2026, 11, 27)
CLIENT_ID = "petit-zinc"

# accounting-rules.md, worked example: (account, label, debit, credit).
WORKED_EXAMPLE: tuple[tuple[str, str, str, str], ...] = (
    ("511500", "Cartes bancaires à encaisser", "925.00", "0.00"),
    ("511800", "Titres-restaurant à encaisser", "200.00", "0.00"),
    ("530000", "Caisse", "398.00", "0.00"),
    ("658000", "Écarts de caisse (charges)", "2.00", "0.00"),
    ("706100", "Ventes TVA 10%", "0.00", "1000.00"),
    ("706200", "Ventes TVA 20%", "0.00", "300.00"),
    ("445712", "TVA collectée 10%", "0.00", "100.00"),
    ("445711", "TVA collectée 20%", "0.00", "60.00"),
    ("419100", "Cartes cadeaux et avoirs clients", "0.00", "50.00"),
    ("467500", "Pourboires à reverser", "0.00", "15.00"),
)
# The worked example's closure corrected: 2.00 more found in the drawer, so no cash shortage.
CORRECTED: tuple[tuple[str, str, str, str], ...] = (
    *((a, label, "400.00" if a == "530000" else d, c) for a, label, d, c in WORKED_EXAMPLE
      if a != "658000"),
)


def _as_cluster_owner(command: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", PG_USER, "--", *command]
    return command


def _run(command: list[str]) -> None:
    result = subprocess.run(_as_cluster_owner(command), capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}",
            pytrace=False,
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL 15 cluster on 127.0.0.1 for this test session; yields its base URL."""
    missing = [tool for tool in ("initdb", "pg_ctl") if not (PG_BIN / tool).is_file()]
    if missing:
        pytest.fail(
            f"PostgreSQL 15 is required by the ledger tests: {', '.join(missing)} not found in "
            f"{PG_BIN} (apt-get install postgresql-15)",
            pytrace=False,
        )
    base = Path(tempfile.mkdtemp(prefix="toporder-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, PG_USER, PG_USER)
    data = base / "data"
    port = _free_port()
    _run(
        [
            str(PG_BIN / "initdb"),
            f"--pgdata={data}",
            f"--username={PG_USER}",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        ]
    )
    options = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={base} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    pg_ctl = str(PG_BIN / "pg_ctl")
    _run(
        [
            pg_ctl,
            "start",
            "--wait",
            f"--pgdata={data}",
            f"--log={base / 'server.log'}",
            "-o",
            options,
        ]
    )
    try:
        yield f"postgresql+psycopg://{PG_USER}@127.0.0.1:{port}"
    finally:
        _run([pg_ctl, "stop", f"--pgdata={data}", "--mode=immediate"])
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_admin(postgres_server: str) -> Iterator[Engine]:
    engine = create_engine(f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database, never migrated: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    with fresh_postgres_database(request) as url:
        yield url


@contextmanager
def fresh_postgres_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a new, empty database on the throwaway cluster, dropped afterwards."""
    server: str = request.getfixturevalue("postgres_server")
    admin: Engine = request.getfixturevalue("postgres_admin")
    name = f"ledger_{uuid.uuid4().hex}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield f"{server}/{name}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')


class Clock:
    """A clock moved by hand, e.g. past the outbox's backoff."""

    def __init__(self, start: datetime = NOW) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock() -> Clock:
    """A clock at ``NOW``, moved by hand."""
    return Clock()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite ledger file migrated once per session: copy it (migrating costs ~0.5 s)."""
    path = tmp_path_factory.mktemp("template") / "ledger.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@contextmanager
def migrated_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated ledger for an ``engine`` fixture of a module whose tests run on SQLite and
    only some also on PostgreSQL: ``postgresql`` when the test asks for it (``indirect``)."""
    with contextlib.ExitStack() as stack:
        url = (f"sqlite:///{tmp_path / 'ledger.db'}"
               if getattr(request, "param", "sqlite") == "sqlite"
               else stack.enter_context(fresh_postgres_database(request)))
        engine = make_engine(url)
        upgrade(engine)
        yield engine
        engine.dispose()


@pytest.fixture
def engine(ledger_url: str) -> Iterator[Engine]:
    """An engine on a ledger migrated to the latest revision."""
    engine = make_engine(ledger_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def now() -> datetime:
    """The fixed instant every test writes with."""
    return NOW


@pytest.fixture
def client_id(engine: Engine) -> str:
    """The client ``petit-zinc``, activated on 2026-11-01."""
    with session_scope(engine) as session:
        activate_client(
            session, CLIENT_ID, name="Le Petit Zinc", activated_on=date(2026, 11, 1), now=NOW
        )
    return CLIENT_ID


def _make_entry(
    business_date: date = BUSINESS_DAY,
    number: int = 412,
    lines: tuple[tuple[str, str, str, str], ...] = WORKED_EXAMPLE,
) -> Entry:
    return Entry(
        journal="VT",
        journal_label="Journal des ventes",
        date=business_date,
        piece_ref=f"Z{number}",
        label=f"Clôture Z{number} du {business_date.isoformat()} - Le Petit Zinc",
        lines=tuple(
            EntryLine(account, label, f"Z{number}", Decimal(debit), Decimal(credit))
            for account, label, debit, credit in lines
        ),
    )


@pytest.fixture
def make_entry() -> Callable[..., Entry]:
    """Build the entry of closure Z<number> (default: the worked example of 2026-11-27)."""
    return _make_entry


@pytest.fixture
def store(engine: Engine, client_id: str) -> Callable[..., StoreResult]:
    """Store a closure of ``petit-zinc`` in a transaction of its own."""

    def store(
        raw: bytes,
        *,
        business_date: date = BUSINESS_DAY,
        number: int | None = 412,
        perpetual_total: object = "98765.43",
        establishment_id: str | None = "est-1",
        now: datetime = NOW,
    ) -> StoreResult:
        with session_scope(engine) as session:
            return store_closure(
                session,
                client_id,
                business_date=business_date,
                raw=raw,
                closure_number=number,
                establishment_id=establishment_id,
                # Text is read as an exact Decimal; anything else (a float…) goes through as
                # given, so that tests can check what the money columns refuse.
                perpetual_total=(
                    Decimal(perpetual_total)
                    if isinstance(perpetual_total, str)
                    else perpetual_total  # type: ignore[arg-type]
                ),
                now=now,
            )

    return store

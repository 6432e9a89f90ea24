"""Client-days per second of the ``catch-up`` flow against a real Prefect server: a measurement.

Not a test. It starts ``prefect server start`` (SQLite in a temporary PREFECT_HOME, or the
PostgreSQL database given by ``--server-db``), fills a temporary SQLite ledger with ``--clients``
simulated clients and ``--days`` closures each, then runs the ``catch-up`` flow in this process,
exactly as a worker runs a ``catch-up`` or ``dispatch-daily`` deployment run once started: every
client-day an async ``post-client-day`` subflow, ``--concurrency`` at once. It prints the wall
time of the flow, client-days per second, the outcomes, and the time 10,000 client-days would
take at that rate. Logs are not shipped to the API (PREFECT_LOGGING_TO_API_ENABLED=false).

    .venv/bin/python bench/fleet_throughput.py --clients 100 --days 3
    .venv/bin/python bench/fleet_throughput.py --clients 100 --days 3 \\
        --server-db postgresql+asyncpg://postgres@127.0.0.1:5432/prefect
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

BIN = Path(sys.executable).parent
FIRST_DAY = date(2026, 11, 2)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_server(home: Path, server_db: str | None) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "PREFECT_UI_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    if server_db:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = server_db
    log = (home / "server.log").open("wb")
    command = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
    api = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{api}/health", timeout=2) as answer:  # noqa: S310
                if answer.status == 200:
                    return server, api
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise SystemExit(f"prefect server did not start:\n{(home / 'server.log').read_text()}")
        time.sleep(0.5)


def fill_ledger(clients: int, days: int) -> list[str]:
    from toporder_sync.core.simulator import dumps, generate_series
    from toporder_sync.ledger import repository
    from toporder_sync.ledger.db import database_url, get_engine, session_scope, upgrade
    from toporder_sync.service import receive

    engine = get_engine(database_url())
    upgrade(engine)
    now = datetime.now(UTC)
    ids = [f"bench-{n:05d}" for n in range(clients)]
    for client_id in ids:
        with session_scope(engine) as session:
            record = repository.activate_client(session, client_id, name=client_id,
                                                activated_on=FIRST_DAY, now=now)
        for closure in generate_series(integration_id=record.integration_id,
                                       establishment_id="est-1", establishment_name=client_id,
                                       start=FIRST_DAY, days=days):
            receive(engine, dumps(closure), f"{client_id}.json", now=now)
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--server-db", help="PREFECT_API_DATABASE_CONNECTION_URL of the server "
                                            "(default: SQLite in a temporary PREFECT_HOME)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    (work / "prefect").mkdir()
    server, api = start_server(work / "prefect", args.server_db)
    try:
        os.environ.update({
            "PREFECT_API_URL": api, "PREFECT_HOME": str(work / "client"),
            "PREFECT_LOGGING_TO_API_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
            "TOPORDER_SYNC_DATABASE_URL": f"sqlite:///{work / 'ledger.db'}",
        })
        started = time.perf_counter()
        ids = fill_ledger(args.clients, args.days)
        print(f"ledger: {len(ids)} clients x {args.days} days in "
              f"{time.perf_counter() - started:.1f} s")
        from toporder_sync.flows.fleet import catch_up

        last = FIRST_DAY + timedelta(days=args.days - 1)
        started = time.perf_counter()
        state = asyncio.run(catch_up(FIRST_DAY, last, ids, args.concurrency,
                                     return_state=True))
        elapsed = time.perf_counter() - started
        total = len(ids) * args.days
        rate = total / elapsed
        print(f"server db: {'PostgreSQL' if args.server_db else 'SQLite'}; "
              f"concurrency {args.concurrency}")
        print(f"catch-up: {state.name}: {state.message}")
        print(f"{total} client-days in {elapsed:.1f} s = {rate:.2f} client-days/s; "
              f"10,000 client-days would take {10_000 / rate / 60:.0f} min at this rate")
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()

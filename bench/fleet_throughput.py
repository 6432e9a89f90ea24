"""Client-days per second of the fleet's flows against a real Prefect server: a measurement.

Not a test. It starts ``prefect server start`` (SQLite in a temporary PREFECT_HOME, or the
PostgreSQL database given by ``--server-db``), fills a ledger (temporary SQLite, or the empty
database of ``--ledger-db``) with ``--clients`` simulated clients, then runs ``--flow`` in
``--shards`` worker processes (shard i of N each), exactly as workers run these deployment runs
once started, ``--concurrency`` client-days at once per process:

* ``dispatch-daily`` (the default): the morning of issue 3. Every client has the closure of
  yesterday (Europe/Paris) and the default 06:00 Europe/Paris schedule; each shard runs
  ``dispatch-daily`` for that hour, every client-day a ``post-client-day`` subflow run;
* ``catch-up``: ``--days`` closures per client, each client's days a ``client-days`` task run.

It prints the wall time, client-days per second, each shard's outcomes, the time 10,000
client-days would take at that rate, and the CPU the worker processes and the server spent per
client-day. Logs are not shipped to the API (PREFECT_LOGGING_TO_API_ENABLED=false).

    .venv/bin/python bench/fleet_throughput.py --clients 300
    .venv/bin/python bench/fleet_throughput.py --flow catch-up --clients 100 --days 3
    .venv/bin/python bench/fleet_throughput.py --clients 1000 --shards 2 \\
        --server-db postgresql+asyncpg://postgres@127.0.0.1:5432/prefect \\
        --ledger-db postgresql+psycopg://postgres@127.0.0.1:5432/ledger
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
DISPATCH_ZONE, DISPATCH_HOUR = "Europe/Paris", 6  # every client's default schedule


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


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process and its reaped children have used (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(v) for v in fields[11:15]) / ticks


def drain(server_pid: int, *, quiet: float = 0.06, limit: float = 900.0) -> float:
    """Wait until the Prefect server is idle (under ``quiet`` CPU-s in a second); the seconds
    waited.

    The server records task runs from their events, asynchronously, and falls behind a burst
    of them: the 1,000 empty mapped tasks ``bench.run`` sends keep it busy for some time after
    they are done (measured: BENCHMARKS.md, "C: warm processes, an idle server"). A run
    measured right after another inherits that backlog; ``bench.run`` starts each rate of C
    from an idle server."""
    started = time.perf_counter()
    before = process_cpu(server_pid)
    while time.perf_counter() - started < limit:
        time.sleep(1.0)
        now = process_cpu(server_pid)
        if now - before < quiet:
            break
        before = now
    return time.perf_counter() - started


def client_ids(prefix: str, count: int) -> list[str]:
    """The ids ``fill_ledger`` gives its simulated clients: ``prefix-00000``…"""
    return [f"{prefix}-{n:05d}" for n in range(count)]


def fill_ledger(clients: int, days: int, url: str | None = None,
                prefix: str = "bench", start: date = FIRST_DAY) -> list[str]:
    """Activate ``clients`` simulated clients (``prefix-00000``…) and store ``days`` closures
    of each from ``start``, in the ledger of ``url`` (default: TOPORDER_SYNC_DATABASE_URL)."""
    from toporder_sync.ledger import clients as ledger_clients
    from toporder_sync.ledger.db import database_url, get_engine, session_scope, upgrade
    from toporder_sync.service import receive
    from toporder_sync.simulator import dumps, generate_series

    engine = get_engine(url or database_url())
    upgrade(engine)
    now = datetime.now(UTC)
    ids = client_ids(prefix, clients)
    for client_id in ids:
        with session_scope(engine) as session:
            record = ledger_clients.activate_client(session, client_id, name=client_id,
                                                    activated_on=start, now=now)
        for closure in generate_series(integration_id=record.integration_id,
                                       establishment_id="est-1", establishment_name=client_id,
                                       start=start, days=days):
            receive(engine, dumps(closure), f"{client_id}.json", now=now)
    return ids


def yesterday() -> date:
    """The day a dispatch started now processes (``calendar.previous_business_day``)."""
    from toporder_sync.core.calendar import previous_business_day

    return previous_business_day(datetime.now(UTC), DISPATCH_ZONE)


def run_shard(flow: str, shard: int, shards: int, days: int, concurrency: int) -> None:
    """One worker's share of the flow, in this process (the environment says where)."""
    from toporder_sync.flows.fleet import catch_up, dispatch_daily

    if flow == "dispatch-daily":
        state = asyncio.run(dispatch_daily(DISPATCH_ZONE, DISPATCH_HOUR, concurrency, shard,
                                           shards, return_state=True))
    else:
        last = FIRST_DAY + timedelta(days=days - 1)
        state = asyncio.run(catch_up(FIRST_DAY, last, None, concurrency, shard, shards,
                                     return_state=True))
    print(f"{flow} shard {shard}/{shards}: {state.name}: {state.message}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flow", choices=["dispatch-daily", "catch-up"],
                        default="dispatch-daily")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--days", type=int, default=3,
                        help="closures per client (catch-up; a dispatch runs one day)")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--shards", type=int, default=1,
                        help="run the flow as this many shard runs in as many processes, "
                             "as that many workers would")
    parser.add_argument("--server-db", help="PREFECT_API_DATABASE_CONNECTION_URL of the server "
                                            "(default: SQLite in a temporary PREFECT_HOME)")
    parser.add_argument("--ledger-db", help="TOPORDER_SYNC_DATABASE_URL of the ledger, an empty "
                                            "database (default: SQLite in a temporary folder)")
    parser.add_argument("--run-shard", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_shard is not None:
        run_shard(args.flow, args.run_shard, args.shards, args.days, args.concurrency)
        return
    if args.flow == "dispatch-daily":
        args.days = 1

    work = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    (work / "prefect").mkdir()
    server, api = start_server(work / "prefect", args.server_db)
    try:
        os.environ.update({
            "PREFECT_API_URL": api, "PREFECT_HOME": str(work / "client"),
            "PREFECT_LOGGING_TO_API_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
            "TOPORDER_SYNC_DATABASE_URL": args.ledger_db or f"sqlite:///{work / 'ledger.db'}",
        })
        started = time.perf_counter()
        ids = fill_ledger(args.clients, args.days,
                          start=yesterday() if args.flow == "dispatch-daily" else FIRST_DAY)
        print(f"ledger: {len(ids)} clients x {args.days} days in "
              f"{time.perf_counter() - started:.1f} s")
        cpu_before, server_before = os.times(), process_cpu(server.pid)
        started = time.perf_counter()
        shards = [subprocess.Popen(  # noqa: S603
            [sys.executable, __file__, "--flow", args.flow, "--run-shard", str(shard),
             "--shards", str(args.shards),
             "--days", str(args.days), "--concurrency", str(args.concurrency)])
            for shard in range(args.shards)]
        failed = [p.args for p in shards if p.wait() != 0]
        elapsed = time.perf_counter() - started
        cpu = os.times()
        # The server records the runs' events after they end: its CPU is read once it is idle.
        backlog = drain(server.pid)
        server_cpu = process_cpu(server.pid) - server_before
        children = (cpu.children_user + cpu.children_system
                    - cpu_before.children_user - cpu_before.children_system)
        total = len(ids) * args.days
        rate = total / elapsed
        print(f"{args.flow}; server db: {'PostgreSQL' if args.server_db else 'SQLite'}; ledger: "
              f"{'PostgreSQL' if args.ledger_db else 'SQLite'}; concurrency {args.concurrency}; "
              f"{args.shards} shard process(es)" + (f"; FAILED: {failed}" if failed else ""))
        print(f"{total} client-days in {elapsed:.1f} s = {rate:.2f} client-days/s; "
              f"10,000 client-days would take {10_000 / rate / 60:.0f} min at this rate; "
              f"CPU per client-day: {1000 * children / total:.1f} ms in the worker processes "
              f"(their start included), {1000 * server_cpu / total:.1f} ms in the Prefect "
              f"server (idle again {backlog:.0f} s after the flow runs ended)")
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()

"""``make bench`` / ``make bench-quick``: five figures, each against a baseline run here and now.

A measurement, not a test: nothing is asserted. Every figure is a ratio (or a rate) against a
baseline measured in the same session, on the same machine, at the same moment:

1. core: CPU of one client-day through ``day.run_day`` on a SQLite ledger (parse → validate →
   map → build → load) / pandera's own ``validate(..., lazy=True)`` of the same closures'
   tables (``bench/core.py``'s baseline) (A);
2. flow: wall time of one ``post-client-day`` run (real closure, SQLite ledger) / one empty
   default (sync) flow run, both on the same ``prefect server`` started here (B);
3. fleet: client-days/s of a ``catch-up`` of 1,000 client-days (200 clients of 5 days, a
   task run per client, 10 at once, its days' pure stages in the default worker processes:
   one on two cores) / task runs/s of 1,000 empty tasks mapped in one default flow run, on
   the same server, each started once the server is idle again (``drain``) (C). Both in a
   process that has run the same small warm-up flow first (two empty mapped tasks), and
   neither the first run of its flow on the server: prefect's once-per-process start and the
   server's first run of a flow are in neither. The catch-up run before it, in a fresh process
   and the first on the server (C as measured until debab36), is printed too;
4. memory: peak RSS (``VmHWM``) of a second catch-up process, of 10,000 client-days, plus
   that of its worker processes, once its first 1,000 are posted and at the end: two sizes
   from one run (D: the larger);
5. ledger: ``toporder_sync.day.run_day`` over the same client-days without Prefect, on SQLite
   and on a throwaway PostgreSQL 15 started (and stopped) here: client-days/s and rows/s.

It prints a table (median of the repeated runs, min, max) and, last, the line
``bench: core A×, flow B×, fleet C×, rss D MB``.

    .venv/bin/python -m bench.run --quick
    .venv/bin/python -m bench.run
"""

from __future__ import annotations

import argparse
import atexit
import json
import multiprocessing
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from bench.fleet_throughput import client_ids, drain, fill_ledger, free_port, start_server

FIRST_DAY = date(2026, 11, 2)
PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "postgres"
RESULT = "BENCH-RESULT "
CONCURRENCY = 10


@dataclass(frozen=True)
class Sizes:
    core_days: int
    core_runs: int
    core_repeats: int
    flow_runs: int
    days: int  # closures per simulated client in the fleet and ledger runs
    fleet_rate: int  # client-days of the catch-up whose rate is C
    fleet: int  # client-days of the catch-up whose peak RSS is D (the larger reading)
    fleet_small: int  # client-days posted when the first peak RSS is read (D)
    empty_tasks: int  # empty mapped tasks of the baseline of C
    empty_repeats: int
    ledger: int  # client-days per ledger database
    ledger_chunks: int


QUICK = Sizes(core_days=3, core_runs=3, core_repeats=2, flow_runs=3, days=2, fleet_rate=30,
              fleet=30, fleet_small=10, empty_tasks=30, empty_repeats=3, ledger=20,
              ledger_chunks=2)
FULL = Sizes(core_days=10, core_runs=5, core_repeats=5, flow_runs=9, days=5, fleet_rate=1000,
             fleet=10_000, fleet_small=1000, empty_tasks=1000, empty_repeats=3, ledger=200,
             ledger_chunks=5)


# ---------------------------------------------------------------- figures and the table


@dataclass(frozen=True)
class Row:
    figure: str
    unit: str
    values: tuple[float, ...]

    def cells(self) -> tuple[str, str, str, str, str, str]:
        def fmt(value: float) -> str:
            return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
        return (self.figure, self.unit, fmt(statistics.median(self.values)),
                fmt(min(self.values)), fmt(max(self.values)), str(len(self.values)))


def print_table(rows: Sequence[Row]) -> None:
    header = ("figure", "unit", "median", "min", "max", "runs")
    table = [header, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for number, line in enumerate(table):
        print("| " + " | ".join(cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i])
                                for i, cell in enumerate(line)) + " |")
        if number == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


# ---------------------------------------------------------------- 1. core


def measure_core(sizes: Sizes, work: Path) -> list[Row]:
    """A: parse → validate → map → build → load of one client-day, against pandera alone.

    The whole of it is ``day.run_day`` on a SQLite ledger (the embedded default): claim and
    admit the day, fetch the closure from the inbox, the pure pipeline, post the entry, release
    the claim; each client-day once (a posted day's rerun would change nothing). The baseline,
    pandera's own ``validate(..., lazy=True)`` of the closure's tables (``bench/core.py``'s),
    and ``pipeline.process`` alone (no ledger) are measured as ``run_day`` is: once per
    client-day, on that day's closure, in a loop of its own over the repeat's client-days (the
    three loops take turns at going first, repeat by repeat), their inputs made beforehand,
    new tables for each validation. Each loop of
    ``run_day`` and ``process`` reads through a ``closure.LineCache`` of its own, made empty
    for it, as a catch-up's worker keeps one: a closure finds remembered only what the loop's
    earlier client-days showed, never its own lines and payments read for the inputs or by
    another loop. A repeat's figures are the medians over its client-days.
    """
    from bench.core import Tables, cpu_ms, pandera_validate
    from toporder_sync.core import pipeline
    from toporder_sync.core import validate as validating
    from toporder_sync.core.closure import LineCache, parse_closure
    from toporder_sync.core.model import ClientSettings
    from toporder_sync.day import client_record, run_day
    from toporder_sync.ledger import inbox
    from toporder_sync.ledger.db import get_engine, session_scope
    from toporder_sync.sources import InboxSource

    url = f"sqlite:///{work / 'core.db'}"
    ids = fill_ledger(sizes.core_runs * sizes.core_repeats + 1, sizes.core_days, url, "core")
    engine = get_engine(url)
    source = InboxSource(engine)
    days = [FIRST_DAY + timedelta(days=d) for d in range(sizes.core_days)]
    settings = ClientSettings("bench")

    def inputs(client_id: str, day: date) -> tuple[bytes, Tables, int]:
        """The day's closure as received, its tables for pandera's validate, and its number of
        ticket lines."""
        with session_scope(engine) as session:
            stored = inbox.latest_closure(session, client_id, day)
        if stored is None:
            raise SystemExit(f"core: no closure for {client_id} {day}")
        closure = parse_closure(stored.raw, "bench.json")
        return (stored.raw, validating.closure_tables(closure, settings.territory),
                sum(len(ticket.lines) for ticket in closure.tickets))

    def repeat_of(turn: int, clients: Sequence[str]) -> tuple[float, float, float, float]:
        """Median CPU ms of run_day, process and pandera's validate over the clients' days, and
        their median ticket lines: each kind of work in a loop of its own, each client-day
        once."""
        client_days = [(client_record(engine, client_id), day)
                       for day in days for client_id in clients]
        made = [inputs(client.client_id, day) for client, day in client_days]

        def load(n: int, lines: LineCache) -> None:
            client, day = client_days[n]
            result = run_day(engine, client, day, source=source, run_id=str(uuid.uuid4()),
                             now=lambda: datetime.now(UTC),
                             assess=partial(pipeline.assess, lines=lines))
            if result.outcome.kind != "posted":
                raise SystemExit(f"core: {client.client_id} {day} ended "
                                 f"{result.outcome.state_name}")

        def process(n: int, lines: LineCache) -> None:
            pipeline.process(made[n][0], "bench.json", settings,
                             integration_id=client_days[n][0].integration_id, lines=lines)

        def bare(n: int, lines: LineCache) -> None:
            pandera_validate(made[n][1])

        works = (load, process, bare)
        spent: dict[Callable[[int, LineCache], None], float] = {}
        for k in range(3):  # the three loops take turns at going first, repeat by repeat
            work, lines = works[(turn + k) % 3], LineCache()
            spent[work] = median([cpu_ms(partial(work, n, lines), 1)
                                  for n in range(len(made))])
        return (spent[load], spent[process], spent[bare],
                median([line_count for _, _, line_count in made]))

    repeat_of(0, ids[:1])  # warm up (imports, statements)
    loads, processes, panderas, lines = [], [], [], []
    for repeat in range(sizes.core_repeats):
        load_ms, process_ms, pandera_ms, line_count = repeat_of(
            repeat, ids[1 + repeat * sizes.core_runs:1 + (repeat + 1) * sizes.core_runs])
        loads.append(load_ms)
        processes.append(process_ms)
        panderas.append(pandera_ms)
        lines.append(line_count)
    return [Row("core: ticket lines per closure", "lines", tuple(lines)),
            Row("core: run_day (SQLite ledger)", "ms CPU/client-day", tuple(loads)),
            Row("core: process (no ledger)", "ms CPU/closure", tuple(processes)),
            Row("core: pandera validate, lazy (the tables)", "ms CPU/closure", tuple(panderas)),
            Row("A core run_day/pandera validate", "×",
                tuple(p / v for p, v in zip(loads, panderas, strict=True))),
            Row("core: process/pandera validate", "×",
                tuple(p / v for p, v in zip(processes, panderas, strict=True)))]


# ---------------------------------------------------------------- child processes


def child(kind: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Run ``kind`` in a fresh process (the environment names the server and ledger)."""
    answer = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "bench.run", "--child", kind, json.dumps(arguments)],
        capture_output=True, text=True, check=False)
    for line in reversed(answer.stdout.splitlines()):
        if line.startswith(RESULT):
            result: dict[str, Any] = json.loads(line[len(RESULT):])
            return result
    raise SystemExit(f"bench child {kind} failed ({answer.returncode}):\n"
                     f"{answer.stdout[-3000:]}\n{answer.stderr[-3000:]}")


def report(result: dict[str, Any]) -> None:
    print(RESULT + json.dumps(result), flush=True)


def child_flow(arguments: dict[str, Any]) -> None:
    """Empty sync flow runs, then ``post-client-day`` runs of one client's successive days, then
    the empty mapped tasks (an async flow, as ``catch-up`` is); each kind of run started the
    way a long-lived process starts many runs, sharing its API clients
    (``runtime.shared_clients``; the sync flow engine reuses an open sync client the same
    way)."""
    import asyncio

    from prefect import tags
    from prefect.settings import get_current_settings

    from bench.prefect_baselines import empty_flow, empty_mapped_tasks
    from toporder_sync.flows.daily import post_client_day
    from toporder_sync.tasks.prefect_private import shared_sync_client
    from toporder_sync.tasks.runtime import shared_clients

    runs: int = arguments["runs"]
    empty, empty_ids = [], []
    with shared_sync_client():
        for _ in range(runs + 1):
            started = time.perf_counter()
            state = empty_flow(return_state=True)
            empty.append(time.perf_counter() - started)
            empty_ids.append(str(state.state_details.flow_run_id))

    async def client_days() -> tuple[list[float], list[str], list[str]]:
        walls, names, ids = [], [], []
        # Tagged as its callers (dispatch-daily, `toporder-sync run`) tag it.
        async with shared_clients():
            for offset in range(runs + 1):
                started = time.perf_counter()
                with tags(f"client:{arguments['client']}", "territory:metropole"):
                    state = await post_client_day(arguments["client"],
                                                  FIRST_DAY + timedelta(days=offset),
                                                  return_state=True)
                walls.append(time.perf_counter() - started)
                names.append(state.name or "")
                ids.append(str(state.state_details.flow_run_id))
        return walls, names, ids

    walls, names, ids = asyncio.run(client_days())

    drained: list[float] = []

    async def mapped() -> list[float]:
        rates = []
        async with shared_clients():
            await empty_mapped_tasks(2)  # warm: the flow's and task's first registration
            for _ in range(arguments["repeats"]):
                drained.append(await asyncio.to_thread(drain, arguments["server_pid"]))
                started = time.perf_counter()
                done = await empty_mapped_tasks(arguments["n"])
                rates.append(done / (time.perf_counter() - started))
        return rates

    rates = asyncio.run(mapped())
    report({"empty": empty[1:], "client_day": walls[1:], "states": names,
            "client_day_ids": ids, "empty_ids": empty_ids, "rates": rates, "drained": drained,
            "heartbeat_frequency": get_current_settings().flows.heartbeat_frequency})


def peak_rss_mb(pid: int | str = "self") -> float:
    """A process's peak resident set so far (VmHWM), in MB (0 for a process gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def workers_peak_mb() -> float:
    """The peaks (VmHWM) of this process's live children, the catch-up's worker processes,
    added up: pages they share with this process count in each (an upper bound)."""
    return sum(peak_rss_mb(child.pid) for child in multiprocessing.active_children()
               if child.pid is not None)


def child_catch_up(arguments: dict[str, Any]) -> None:
    """One catch-up of the clients; the peak RSS once the first ``checkpoint`` client-days are
    posted (watched in the ledger, unless no checkpoint is given) and at the end, so two sizes
    from one run."""
    import asyncio

    from sqlalchemy import text

    from toporder_sync import core_processes
    from toporder_sync.flows.fleet import catch_up
    from toporder_sync.ledger.db import get_engine

    last = FIRST_DAY + timedelta(days=arguments["days"] - 1)
    clients = client_ids(arguments["prefix"], arguments["clients"])
    engine, done = get_engine(), threading.Event()
    checkpoint: list[tuple[int, float, float, float]] = []  # posted, rss, workers, seconds

    workers_peak = [0.0]  # the worker processes' (their peaks grow until they end)
    started = [time.perf_counter()]

    def watch() -> None:
        count = text("SELECT count(*) FROM entries WHERE client_id LIKE :prefix")
        while not done.wait(0.5):
            workers_peak[0] = max(workers_peak[0], workers_peak_mb())
            if arguments["checkpoint"] is None or checkpoint:
                continue
            with engine.connect() as connection:
                posted = connection.execute(
                    count, {"prefix": f"{arguments['prefix']}-%"}).scalar_one()
            if posted >= arguments["checkpoint"]:
                checkpoint.append((posted, peak_rss_mb(), workers_peak[0],
                                   time.perf_counter() - started[0]))

    async def run() -> tuple[Any, float]:
        if arguments.get("warm"):
            # As the empty mapped tasks' process is before they are timed (``child_flow``):
            # prefect starts its clients and imports what its first run needs, in the same
            # event loop; nothing of toporder-sync runs.
            from bench.prefect_baselines import empty_mapped_tasks
            await empty_mapped_tasks(2)
        started[0] = time.perf_counter()
        state = await catch_up(FIRST_DAY, last, clients, CONCURRENCY, return_state=True)
        return state, time.perf_counter() - started[0]

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    state, wall = asyncio.run(run())
    done.set()
    watcher.join()
    report({"wall": wall, "client_days": len(clients) * arguments["days"],
            "state": f"{state.name}: {state.message}", "checkpoint": checkpoint,
            "flow_mb": peak_rss_mb(), "workers_mb": workers_peak[0],
            "workers": core_processes.default_processes()})


CHILDREN: dict[str, Callable[[dict[str, Any]], None]] = {
    "flow": child_flow, "catch-up": child_catch_up}


# ---------------------------------------------------------------- heartbeats


def heartbeats(api: str, flow_run_ids: Sequence[str]) -> int | None:
    """Heartbeat events the server holds for these flow runs (None: the query failed)."""
    body = json.dumps({"filter": {
        "event": {"name": ["prefect.flow-run.heartbeat"]},
        "resource": {"id": [f"prefect.flow-run.{run_id}" for run_id in flow_run_ids]},
    }, "limit": 50}).encode()
    request = urllib.request.Request(f"{api}/events/filter", data=body, method="POST",  # noqa: S310
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            total: int = json.load(answer)["total"]
            return total
    except (OSError, KeyError, ValueError) as exc:
        print(f"heartbeat query failed: {exc}", flush=True)
        return None


# ---------------------------------------------------------------- 5. ledger without Prefect


def table_rows(url: str) -> int:
    from sqlalchemy import func, inspect, select, table

    from toporder_sync.ledger.db import get_engine

    engine = get_engine(url)
    with engine.connect() as connection:
        names = [n for n in inspect(connection).get_table_names() if n != "alembic_version"]
        return sum(connection.execute(select(func.count()).select_from(table(n))).scalar_one()
                   for n in names)


def measure_ledger(url: str, sizes: Sizes, label: str) -> list[Row]:
    from toporder_sync.day import client_record, run_day
    from toporder_sync.ledger.db import get_engine
    from toporder_sync.sources import InboxSource

    clients = max(1, sizes.ledger // sizes.days)
    ids = fill_ledger(clients, sizes.days, url, "ledger")
    engine = get_engine(url)
    source = InboxSource(engine)
    work = [(client_id, FIRST_DAY + timedelta(days=d)) for client_id in ids
            for d in range(sizes.days)]
    chunk = -(-len(work) // sizes.ledger_chunks)
    day_rates, row_rates, outcomes = [], [], set()
    for start in range(0, len(work), chunk):
        part = work[start:start + chunk]
        before = table_rows(url)
        started = time.perf_counter()
        for client_id, day in part:
            result = run_day(engine, client_record(engine, client_id), day, source=source,
                             run_id=str(uuid.uuid4()), now=lambda: datetime.now(UTC))
            outcomes.add(result.outcome.kind)
        elapsed = time.perf_counter() - started
        day_rates.append(len(part) / elapsed)
        row_rates.append((table_rows(url) - before) / elapsed)
    print(f"ledger {label}: {len(work)} client-days, outcomes {sorted(outcomes)}", flush=True)
    return [Row(f"E ledger {label}", "client-days/s", tuple(day_rates)),
            Row(f"E ledger {label}", "rows written/s", tuple(row_rates))]


def _as_owner(command: list[str]) -> list[str]:
    return ["runuser", "-u", PG_USER, "--", *command] if os.geteuid() == 0 else command


@contextmanager
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL 15 cluster (fsync off) on 127.0.0.1; yields its base URL."""
    base = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, PG_USER, PG_USER)
    data, port = base / "data", free_port()
    subprocess.run(_as_owner([str(PG_BIN / "initdb"), f"--pgdata={data}",  # noqa: S603
                              f"--username={PG_USER}", "--auth=trust", "--encoding=UTF8",
                              "--no-locale", "--no-sync"]), check=True, capture_output=True)
    options = (f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={base} "
               "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
    pg_ctl = str(PG_BIN / "pg_ctl")
    subprocess.run(_as_owner([pg_ctl, "start", "--wait", f"--pgdata={data}",  # noqa: S603
                              f"--log={base / 'server.log'}", "-o", options]),
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://{PG_USER}@127.0.0.1:{port}"
    finally:
        subprocess.run(_as_owner([pg_ctl, "stop", f"--pgdata={data}",  # noqa: S603
                                  "--mode=immediate"]), check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def create_database(base_url: str, name: str) -> str:
    from sqlalchemy import create_engine, text

    admin = create_engine(f"{base_url}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return f"{base_url}/{name}"


# ---------------------------------------------------------------- the session


def stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small sizes (make bench-quick)")
    parser.add_argument("--fleet", type=int, help="client-days of D's catch-up (default: "
                        f"{QUICK.fleet} with --quick, {FULL.fleet:,} without)")
    parser.add_argument("--sqlite-server", action="store_true",
                        help="the Prefect server on SQLite without --quick too")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        CHILDREN[args.child[0]](json.loads(args.child[1]))
        return
    sizes = QUICK if args.quick else FULL
    if args.fleet:
        sizes = replace(sizes, fleet=args.fleet, fleet_small=min(sizes.fleet_small,
                                                                 args.fleet // 2))
    # A SQLite-backed server answers 503 (database locked) under a thousand mapped tasks on a
    # busy machine (seen here); the full bench puts it on a throwaway PostgreSQL cluster, as
    # production does. The quick one keeps SQLite: its sizes are small and it starts faster.
    on_postgres = not (args.quick or args.sqlite_server)
    services = ExitStack()
    atexit.register(services.close)  # the cluster goes, however the bench ends
    began = time.perf_counter()
    rows: list[Row] = []
    notes: list[str] = []

    def step(title: str) -> None:
        print(f"[{time.perf_counter() - began:6.1f} s] {title}", flush=True)

    def measure_ledgers() -> None:
        step(f"ledger SQLite: {sizes.ledger} client-days through run_day")
        rows.extend(measure_ledger(f"sqlite:///{work / 'ledger-only.db'}", sizes, "SQLite"))
        step("ledger PostgreSQL 15: starting a throwaway cluster")
        with postgres() as base_url:
            step(f"ledger PostgreSQL: {sizes.ledger} client-days through run_day")
            rows.extend(measure_ledger(create_database(base_url, "ledger"), sizes, "PostgreSQL"))

    work = Path(tempfile.mkdtemp(prefix="bench-run-"))
    (work / "prefect").mkdir()
    # The core first, alone on the machine: a server starting on the other core slowed the
    # ledger's side of run_day more than its baseline, which has no ledger.
    step(f"core: {sizes.core_repeats} repeats of {sizes.core_runs} clients x "
         f"{sizes.core_days} days, each client-day once")
    rows += measure_core(sizes, work)
    # `prefect server start` takes 10–15 s to come up here (its migrations): the ledger fill
    # (and, with --quick, the ledger figures) are made meanwhile, in this process.
    server_db = None
    if on_postgres:
        base_url = services.enter_context(postgres())
        server_db = create_database(base_url, "prefect").replace("+psycopg", "+asyncpg")
    step(f"prefect server ({'PostgreSQL' if on_postgres else 'SQLite'}) starting, in the "
         "background")
    started: list[tuple[subprocess.Popen[bytes], str, float]] = []  # server, API, when it was up

    def start() -> None:
        started.append((*start_server(work / "prefect", server_db),
                        time.perf_counter() - began))

    starter = threading.Thread(target=start)
    starter.start()

    ledger_url = f"sqlite:///{work / 'ledger.db'}"
    rate_clients, large_clients = sizes.fleet_rate // sizes.days, sizes.fleet // sizes.days
    step(f"ledger fill: 1 client x {sizes.flow_runs + 1} days, "
         f"{rate_clients} + {rate_clients} + {large_clients} clients x {sizes.days} days")
    fill_ledger(1, sizes.flow_runs + 1, ledger_url, "flow")
    fill_ledger(rate_clients, sizes.days, ledger_url, "rate")
    fill_ledger(rate_clients, sizes.days, ledger_url, "cold")
    fill_ledger(large_clients, sizes.days, ledger_url, "large")
    if args.quick:
        measure_ledgers()
        notes.append("--quick: the ledger figures were measured while the prefect server was "
                     "starting (on the other core); the core figures before it was started")
    starter.join()
    if not started:
        raise SystemExit("prefect server did not start")
    server, api, up_at = started[0]
    step(f"prefect server up (since {up_at:.1f} s)")
    try:
        os.environ.update({
            "PREFECT_API_URL": api, "PREFECT_HOME": str(work / "client"),
            "PREFECT_LOGGING_TO_API_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
            "TOPORDER_SYNC_DATABASE_URL": ledger_url,
        })
        step(f"flow: {sizes.flow_runs} empty sync flow runs, {sizes.flow_runs} client-day runs "
             f"(after one warm-up each); {sizes.empty_repeats} x {sizes.empty_tasks} empty mapped "
             "tasks")
        flow = child("flow", {"runs": sizes.flow_runs, "client": "flow-00000",
                              "n": sizes.empty_tasks, "repeats": sizes.empty_repeats,
                              "server_pid": server.pid})
        rows += [Row("flow: post-client-day", "s wall/run", tuple(flow["client_day"])),
                 Row("flow: empty sync flow", "s wall/run", tuple(flow["empty"])),
                 Row("B flow client-day/empty", "×",
                     tuple(c / e for c, e in zip(flow["client_day"], flow["empty"],
                                                 strict=True)))]
        drained = drain(server.pid)
        # First the catch-up as C measured it until debab36, in a fresh
        # process and the first catch-up this server sees; then C, as the empty mapped tasks
        # are measured: in a process that has run their warm-up flow, and not the first run of
        # its flow on the server.
        step(f"fleet: catch-up of {sizes.fleet_rate} client-days in a fresh process, the "
             f"first on this server, server idle after {drained:.0f} s")
        cold = child("catch-up", {"days": sizes.days, "prefix": "cold", "clients": rate_clients,
                                  "checkpoint": None})
        cold_rate = cold["client_days"] / cold["wall"]
        drained = drain(server.pid)
        step(f"fleet: catch-up of {sizes.fleet_rate} client-days (C), server idle after "
             f"{drained:.0f} s")
        fast = child("catch-up", {"days": sizes.days, "prefix": "rate", "clients": rate_clients,
                                  "checkpoint": None, "warm": True})
        rate = fast["client_days"] / fast["wall"]
        rows += [Row(f"fleet: catch-up {fast['client_days']}", "client-days/s", (rate,)),
                 Row(f"fleet: empty mapped tasks x{sizes.empty_tasks}", "task runs/s",
                     tuple(flow["rates"])),
                 Row("C fleet catch-up/empty", "×", tuple(rate / r for r in flow["rates"])),
                 Row(f"fleet: catch-up {cold['client_days']}, fresh, first", "client-days/s",
                     (cold_rate,)),
                 Row("  its ratio to the empty mapped tasks", "×",
                     tuple(cold_rate / r for r in flow["rates"]))]
        drained = drain(server.pid)
        step(f"fleet: catch-up of {sizes.fleet} client-days (D), peak RSS at "
             f"{sizes.fleet_small} and at {sizes.fleet}, server idle after {drained:.0f} s")
        large = child("catch-up", {"days": sizes.days, "prefix": "large",
                                   "clients": large_clients, "checkpoint": sizes.fleet_small})
        rows.append(Row(f"fleet: catch-up {large['client_days']} (D's run)", "client-days/s",
                        (large["client_days"] / large["wall"],)))
        if large["checkpoint"]:
            posted, peak, workers_peak, elapsed = large["checkpoint"][0]
            rows.append(Row(f"fleet: its first {posted} client-days", "client-days/s",
                            (posted / elapsed,)))
            rows += rss_rows(posted, peak, workers_peak)
        rows += rss_rows(large["client_days"], large["flow_mb"], large["workers_mb"])
        notes.append(f"catch-up {fast['client_days']} (C, after the warm-up flow, the second "
                     f"on the server): {fast['state']} ({fast['wall']:.1f} s); in a fresh "
                     "process, the first catch-up on the server: "
                     f"{cold['state']} ({cold['wall']:.1f} s); catch-up "
                     f"{large['client_days']} (D): {large['state']} ({large['wall']:.1f} s); "
                     f"peak RSS (VmHWM) of D's process and of its {large['workers']} worker "
                     "process(es), read once the ledger held the first entries, then at the end; "
                     "D is their sum")
        notes.append("each rate of C measured from an idle prefect server (waited for before "
                     f"each: {', '.join(f'{s:.0f}' for s in flow['drained'])} s before the "
                     "empty mapped tasks' repeats)")
        beats = heartbeats(api, flow["client_day_ids"]), heartbeats(api, flow["empty_ids"])
        notes.append(f"client-day states: {sorted(set(flow['states']))}")
        notes.append(
            f"heartbeats: still sent by the async client-day flow. "
            f"PREFECT_FLOWS_HEARTBEAT_FREQUENCY={flow['heartbeat_frequency']} s (minimum 30); "
            "prefect 3.9.1's async flow engine starts the heartbeat thread too (a beat at the "
            "start, then one per interval), it only skips joining it at exit (join_on_exit="
            f"False). Heartbeat events on the server: {beats[0]} for "
            f"{len(flow['client_day_ids'])} client-day runs, {beats[1]} for "
            f"{len(flow['empty_ids'])} empty sync runs")
    finally:
        stop(server)
        services.close()
    if not args.quick:
        measure_ledgers()
    shutil.rmtree(work, ignore_errors=True)
    step("done")

    print()
    print_table(rows)
    print()
    for note in notes:
        print(f"- {note}")
    print(f"- {os.cpu_count()} CPUs, concurrency {CONCURRENCY}, API logs off, prefect server "
          f"on {'PostgreSQL' if on_postgres else 'SQLite'}; "
          f"{time.perf_counter() - began:.0f} s in all")
    by_name = {row.figure: median(row.values) for row in rows}
    # Enough digits that a figure just short of its target never prints as meeting it
    # (a fleet ratio of 0.498 printed "0.50").
    print(f"bench: core {by_name['A core run_day/pandera validate']:.2f}×, "
          f"flow {by_name['B flow client-day/empty']:.3f}×, "
          f"fleet {by_name['C fleet catch-up/empty']:.3f}×, "
          f"rss {large['flow_mb'] + large['workers_mb']:.0f} MB")


def rss_rows(client_days: int, flow_mb: float, workers_mb: float) -> list[Row]:
    return [Row(f"  rss peak of the flow's process at {client_days}", "MB", (flow_mb,)),
            Row(f"  rss peak of its workers at {client_days}", "MB", (workers_mb,)),
            Row(f"D rss peak at {client_days} client-days", "MB", (flow_mb + workers_mb,))]


if __name__ == "__main__":
    main()

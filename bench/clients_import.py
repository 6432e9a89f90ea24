"""Wall time of ``toporder-sync clients import`` on a fleet-sized file: a measurement.

Not a test. It writes a CSV of ``--clients`` clients (default 10,000: every territory, a few
timezones, every run hour, one in three ``pull``, one in two with a webhook URL), then runs
the command as an operator would, in a fresh process each time, against a fresh SQLite ledger
in a temporary folder or the empty database of ``--ledger-db``:

1. the first import (every client created, its secrets printed);
2. the same file again (nothing changes, nothing printed);
3. the file with every client's run hour moved (every client updated).

Each figure is the wall time and the CPU time (user + system) of the command's process; a
database server's CPU is not in it. Each import's figures include the start of the command
(Python, the imports, the ledger's ``upgrade``), measured on its own as a second
``toporder-sync clients list`` on the empty ledger (the first one creates the schema).
With ``--single N`` it also onboards N clients one at a time, the four commands of issue 21
(``clients activate``, ``set-source``, ``set-webhook``, ``push-secret``), and prints what
10,000 would take at that pace.

    .venv/bin/python bench/clients_import.py
    .venv/bin/python bench/clients_import.py --single 5
    .venv/bin/python bench/clients_import.py \\
        --ledger-db postgresql+psycopg://postgres@127.0.0.1:5432/ledger
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
COMMAND = str(BIN / "toporder-sync")
HEADER = ("id", "name", "activation_date", "territory", "timezone", "run_hour",
          "deadline_hour", "source", "webhook_url")
PLACES = (("metropole", "Europe/Paris"), ("corse", "Europe/Paris"),
          ("dom", "America/Martinique"), ("dom", "Indian/Reunion"), ("dom", "America/Cayenne"))


def write_fleet(path: Path, clients: int, *, run_hour_shift: int = 0) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(HEADER)
        for n in range(clients):
            territory, timezone = PLACES[n % len(PLACES)]
            writer.writerow((
                f"client-{n:06d}", f"Restaurant n°{n}, « chez nous »", "2026-11-01", territory,
                timezone, (n + run_hour_shift) % 24, 12, "pull" if n % 3 == 0 else "push",
                f"https://hooks.toporder.example/{n}?k=t{n}" if n % 2 else "",
            ))


@dataclass(frozen=True, slots=True)
class Timing:
    wall: float
    cpu: float  # user + system seconds of the command's process (not of a database server)

    def __str__(self) -> str:
        return f"{self.wall:6.2f} s wall, {self.cpu:5.2f} s CPU"


def timed(args: Sequence[str],
          env: dict[str, str]) -> tuple[Timing, subprocess.CompletedProcess[str]]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([COMMAND, *args], env=env, capture_output=True, text=True)  # noqa: S603
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"toporder-sync {' '.join(args)} exited {done.returncode}:\n"
                         f"{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timing(elapsed, cpu), done


def import_once(label: str, path: Path, env: dict[str, str]) -> None:
    timing, done = timed(["clients", "import", str(path)], env)
    printed = max(len(done.stdout.splitlines()) - 1, 0)
    print(f"{label:<30} {timing}  {done.stderr.strip()}; {printed} row(s) of secrets printed")


def single(count: int, env: dict[str, str]) -> None:
    wall = cpu = 0.0
    for n in range(count):
        client = f"single-{n:03d}"
        for args in (["clients", "activate", client, "--name", f"Single {n}",
                      "--on", "2026-11-01"],
                     ["clients", "set-source", client, "push"],
                     ["clients", "set-webhook", client, f"https://hooks.toporder.example/s{n}"],
                     ["clients", "push-secret", client]):
            timing, _ = timed(args, env)
            wall, cpu = wall + timing.wall, cpu + timing.cpu
    per_client = Timing(wall / count, cpu / count)
    print(f"{'one client, 4 commands':<30} {per_client}: 10,000 clients in "
          f"{per_client.wall * 10_000 / 3600:.1f} h")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--ledger-db", help="an empty ledger database (default: a fresh "
                                            "SQLite file in a temporary folder)")
    parser.add_argument("--single", type=int, default=0, metavar="N",
                        help="also onboard N clients one at a time, for comparison")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="clients-import-") as folder:
        work = Path(folder)
        ledger = options.ledger_db or f"sqlite:///{work / 'ledger.db'}"
        env = {**os.environ, "TOPORDER_SYNC_DATABASE_URL": ledger}
        fleet, moved = work / "fleet.csv", work / "fleet-moved.csv"
        write_fleet(fleet, options.clients)
        write_fleet(moved, options.clients, run_hour_shift=1)
        print(f"{options.clients} clients, {fleet.stat().st_size / 1e6:.1f} MB of CSV; ledger "
              f"{'SQLite (fresh file)' if options.ledger_db is None else 'given (--ledger-db)'}")
        migrated, _ = timed(["clients", "list"], env)
        startup, _ = timed(["clients", "list"], env)
        print(f"{'clients list, schema created':<30} {migrated}")
        print(f"{'clients list, empty ledger':<30} {startup}  (the start of any command)")
        import_once("first import", fleet, env)
        import_once("same file again", fleet, env)
        import_once("every run hour moved", moved, env)
        if options.single:
            single(options.single, env)


if __name__ == "__main__":
    main()

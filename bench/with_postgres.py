"""Run a command against a throwaway PostgreSQL 15 cluster: a bench helper, not a test.

It initialises a cluster in a temporary folder (trust authentication, 127.0.0.1 on a free
port, ``max_connections`` 300), creates the databases ``prefect`` and ``ledger``, runs the
command given after ``--`` with ``{server_db}`` and ``{ledger_db}`` replaced by their URLs
(``postgresql+asyncpg://…/prefect`` for the Prefect server, ``postgresql+psycopg://…/ledger``
for the ledger), then stops the cluster and removes its folder, also on Ctrl-C or SIGTERM. It
exits with the command's status.

The cluster runs with ``fsync=off``, ``synchronous_commit=off`` and ``full_page_writes=off``:
no commit waits for the disk, so it measures less I/O than a production server would do (and
its data would not survive a crash, which does not matter for a throwaway cluster). Run as
root, ``initdb`` and ``pg_ctl`` run as the ``postgres`` user (they refuse to run as root), as
tests/conftest.py's ``postgres_server`` does.

    .venv/bin/python bench/with_postgres.py -- .venv/bin/python bench/fleet_throughput.py \\
        --clients 2000 --shards 2 --server-db {server_db} --ledger-db {ledger_db}
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from types import FrameType

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "postgres"
DATABASES = ("prefect", "ledger")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def as_owner(command: list[str]) -> list[str]:
    """``command`` run as the cluster's owner when we are root (initdb refuses root)."""
    return ["/usr/sbin/runuser", "-u", PG_USER, "--", *command] if os.geteuid() == 0 else command


def run(command: list[str], check: bool = True) -> None:
    result = subprocess.run(as_owner(command), capture_output=True, text=True)  # noqa: S603
    if check and result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n"
                         f"{result.stdout}{result.stderr}")


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through the finally that stops the cluster


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-connections", type=int, default=300)
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="after --: the command, with {server_db} and {ledger_db}")
    args = parser.parse_args()
    command: list[str] = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command after --")
    missing = [tool for tool in ("initdb", "pg_ctl", "createdb") if not (PG_BIN / tool).is_file()]
    if missing:
        raise SystemExit(f"{', '.join(missing)} not found in {PG_BIN} (apt-get install "
                         "postgresql-15)")

    signal.signal(signal.SIGTERM, on_sigterm)
    base = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    data, port = base / "data", free_port()
    pg_ctl = [str(PG_BIN / "pg_ctl"), f"--pgdata={data}"]
    child: subprocess.Popen[bytes] | None = None
    try:
        if os.geteuid() == 0:
            shutil.chown(base, PG_USER, PG_USER)
        run([str(PG_BIN / "initdb"), f"--pgdata={data}", f"--username={PG_USER}",
             "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync"])
        options = (f"-c listen_addresses=127.0.0.1 -c port={port} "
                   f"-c unix_socket_directories={base} -c max_connections={args.max_connections} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        run([*pg_ctl, "start", "--wait", f"--log={base / 'server.log'}", "-o", options])
        for name in DATABASES:
            run([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", PG_USER,
                 name])
        urls = {"{server_db}": f"postgresql+asyncpg://{PG_USER}@127.0.0.1:{port}/prefect",
                "{ledger_db}": f"postgresql+psycopg://{PG_USER}@127.0.0.1:{port}/ledger"}
        for placeholder, url in urls.items():
            command = [part.replace(placeholder, url) for part in command]
        print(f"PostgreSQL 15 on 127.0.0.1:{port} (fsync off), databases "
              f"{', '.join(DATABASES)}: {' '.join(command)}", flush=True)
        child = subprocess.Popen(command)  # noqa: S603
        return child.wait()
    except KeyboardInterrupt:
        if child is not None and child.poll() is None:
            child.terminate()  # Ctrl-C reached it already; SIGTERM did not
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
        if (data / "postmaster.pid").exists():
            run([*pg_ctl, "stop", "--mode=fast", "--wait"], check=False)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

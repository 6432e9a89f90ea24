"""What the relay service costs while idle: a measurement, not a test.

It starts ``toporder-sync relay`` (the installed command, its default ``--interval`` unless
given) on an empty SQLite ledger in a temporary folder, lets it warm up, then reads the
process's CPU time (utime + stime of ``/proc/<pid>/stat``) before and after ``--seconds`` and
prints it as a percentage of one core, with the process's resident memory. The relay is
stopped with SIGTERM at the end, as a service manager would.

With ``--prefect``, ``prefect server start`` on a free port of 127.0.0.1 is its
PREFECT_API_URL, and one message is waiting when it starts (for a client without a webhook
yet: deferred for an hour), so that its first round is a ``relay-outbox`` flow run and
Prefect's machinery (API client, log and event workers) is up while it is measured; the
flow runs counted before and after the measure show that idle makes none.

    .venv/bin/python -m bench.relay_idle
    .venv/bin/python -m bench.relay_idle --prefect
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, date, datetime
from pathlib import Path

from bench.fleet_throughput import start_server

BIN = Path(sys.executable).parent


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) the process has used (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_for(path: Path, text: str, process: subprocess.Popen[bytes], limit: float) -> None:
    deadline = time.monotonic() + limit
    while text not in path.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the relay never said {text!r}:\n{path.read_text()}")
        time.sleep(0.2)


def waiting_message(ledger_url: str) -> None:
    """One message due now, of a client without a webhook: its round defers it an hour."""
    from toporder_sync import outbox
    from toporder_sync.ledger import clients
    from toporder_sync.ledger.db import make_engine, session_scope, upgrade

    engine = make_engine(ledger_url)
    upgrade(engine)
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        clients.activate_client(session, "bench-relay", name="bench-relay",
                                activated_on=date(2026, 11, 1), now=now)
        outbox.enqueue(session, topic="day.flagged", client_id="bench-relay",
                       business_date=None, payload={"type": "bench"}, now=now)
    engine.dispose()


def relay_flow_runs(api: str) -> int:
    request = urllib.request.Request(  # noqa: S310 (the server started here, on 127.0.0.1)
        f"{api}/flow_runs/count", method="POST",
        data=json.dumps({"flows": {"name": {"any_": ["relay-outbox"]}}}).encode(),
        headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
        count: int = json.load(answer)
        return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the measure")
    parser.add_argument("--warmup", type=float, default=10.0,
                        help="seconds after the relay's start line before the measure")
    parser.add_argument("--interval", type=float, default=None,
                        help="the relay's --interval (default: the command's)")
    parser.add_argument("--prefect", action="store_true",
                        help="with a Prefect server as PREFECT_API_URL")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="relay-idle-"))
    ledger_url = f"sqlite:///{work / 'ledger.db'}"
    env = {**os.environ, "TOPORDER_SYNC_DATABASE_URL": ledger_url,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    env.pop("PREFECT_API_URL", None)
    server = api = None
    if args.prefect:
        (work / "prefect").mkdir()
        server, api = start_server(work / "prefect", None)
        env["PREFECT_API_URL"] = api
        waiting_message(ledger_url)
    command = [str(BIN / "toporder-sync"), "relay"]
    if args.interval is not None:
        command += ["--interval", str(args.interval)]
    out, err = work / "relay.out", work / "relay.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        relay = subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr)  # noqa: S603
    try:
        wait_for(err, "relay: ", relay, 120)
        if args.prefect:
            wait_for(out, "1 due: 0 sent, 0 to retry, 1 waiting for a webhook", relay, 120)
        time.sleep(args.warmup)
        runs_before = relay_flow_runs(api) if api else None
        before, started = cpu_seconds(relay.pid), time.monotonic()
        time.sleep(args.seconds)
        used, elapsed = cpu_seconds(relay.pid) - before, time.monotonic() - started
        runs_after = relay_flow_runs(api) if api else None
        memory = rss_mb(relay.pid)
    finally:
        relay.send_signal(signal.SIGTERM)
        code = relay.wait(timeout=60)
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
    mode = "with PREFECT_API_URL (a prefect server)" if args.prefect else "without Prefect"
    ledger = "one message deferred for an hour" if args.prefect else "empty"
    print(f"toporder-sync relay {mode}, {' '.join(command[2:]) or 'default --interval'}, "
          f"SQLite ledger {ledger}, idle:")
    print(f"  {used:.2f} CPU-s in {elapsed:.1f} s = {100 * used / elapsed:.2f} % of one core; "
          f"RSS {memory:.0f} MB")
    if runs_before is not None:
        print(f"  relay-outbox flow runs: {runs_before} before the measure (the round of the "
              f"waiting message), {runs_after} after")
    stopped = err.read_text(errors="replace").splitlines()[-1:]
    print(f"  stopped by SIGTERM: exit {code}, last line {stopped}")


if __name__ == "__main__":
    main()

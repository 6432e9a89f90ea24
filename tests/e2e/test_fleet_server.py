"""The fleet on a real Prefect server with two process workers, deployed from prefect.yaml.

The project is deployed with ``prefect deploy --all`` as an operator would; the schedules of the
``dispatch-daily`` deployment come from ``toporder-sync schedules sync`` and are read back
through the REST API; two shard runs of a ``catch-up`` deployment are picked up by two workers,
and every client-day they run is checked in the ledger (posted once) and on the server (a
task run per client named ``<client> <first day> to <last day>``, its client's days in date
order, the client with a flagged day in state ``POS data error``); then the
``dispatch-daily`` deployment runs yesterday's closures through the same workers, each
client-day a flow run of its own named ``<client> <day>`` and tagged with its client.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from e2e.conftest import BIN, Cli
from toporder_sync.core.calendar import previous_business_day
from toporder_sync.fleet import in_shard
from toporder_sync.simulator import dumps, generate_series

REPO = Path(__file__).resolve().parents[2]
FIRST_DAY, DAYS = date(2026, 11, 16), 3
BAD_DAY = FIRST_DAY + timedelta(days=1)
YESTERDAY = previous_business_day(datetime.now(UTC), "Europe/Paris")
# client: (timezone, run hour, deadline hour, faults of BAD_DAY)
CLIENTS: dict[str, tuple[str, int, int, frozenset[str]]] = {
    "fleet-zinc": ("Europe/Paris", 6, 9, frozenset()),
    "fleet-port": ("Europe/Paris", 7, 9, frozenset({"unbalanced"})),
    "fleet-lagon": ("Indian/Reunion", 6, 7, frozenset()),
}
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


class Api:
    """The Prefect REST API, as any client of the server sees it."""

    def __init__(self, url: str, project: Path) -> None:
        self.url = url
        self.project = project

    def __call__(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            text = answer.read()
        return json.loads(text) if text else None

    def deployment(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self("GET", f"/deployments/name/{name}")
        return found

    def schedules(self) -> dict[str, dict[str, Any]]:
        deployment = self.deployment("dispatch-daily/dispatch-daily")
        rows = self("GET", f"/deployments/{deployment['id']}/schedules")
        return {row["slug"]: row for row in rows}

    def wait(self, run_ids: list[str], seconds: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + seconds
        while True:
            runs = [self("GET", f"/flow_runs/{run_id}") for run_id in run_ids]
            if all(r["state_type"] in TERMINAL for r in runs):
                return runs
            if time.monotonic() > deadline:
                pytest.fail(f"runs not finished after {seconds} s: "
                            f"{[(r['name'], r['state_type']) for r in runs]}")
            time.sleep(1)


def prefect(api: str, *args: str, cwd: Path = REPO) -> str:
    env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1"}
    result = subprocess.run([str(BIN / "prefect"), *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


@pytest.fixture(scope="module")
def deployed(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Api:
    """The work pool and the deployments of prefect.yaml, from a copy of the project."""
    # A copy, so that whatever `prefect deploy` writes next to prefect.yaml stays out of the repo.
    project = tmp_path_factory.mktemp("project")
    shutil.copy(REPO / "prefect.yaml", project / "prefect.yaml")
    shutil.copytree(REPO / "flows", project / "flows",
                    ignore=shutil.ignore_patterns("__pycache__"))
    prefect(prefect_api, "work-pool", "create", "toporder-sync", "--type", "process",
            "--overwrite")
    prefect(prefect_api, "--no-prompt", "deploy", "--all", cwd=project)
    return Api(prefect_api, project)


@pytest.fixture(scope="module")
def fleet(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """One ledger with the three clients activated and their closures received."""
    cli = Cli(tmp_path_factory.mktemp("fleet"), prefect_api)
    names = []
    for client, (timezone, run_hour, deadline_hour, faults) in CLIENTS.items():
        activated = cli("clients", "activate", client, "--name", client, "--on", "2026-11-01",
                        "--timezone", timezone, "--run-hour", str(run_hour),
                        "--deadline-hour", str(deadline_hour))
        integration_id = activated.stdout.strip().splitlines()[-1]
        closures = generate_series(integration_id=integration_id, establishment_id="est-1",
                                   establishment_name=client, start=FIRST_DAY, days=DAYS,
                                   timezone=timezone, faults_by_day={BAD_DAY: faults})
        for closure in closures:
            name = f"{client}-{closure['closure']['business_date']}.json"
            (cli.workdir / name).write_bytes(dumps(closure))
            names.append(name)
        # Received later, by the dispatch test: the day a dispatch started now processes.
        [yesterday] = generate_series(integration_id=integration_id, establishment_id="est-1",
                                      establishment_name=client, start=YESTERDAY, days=1,
                                      timezone=timezone)
        (cli.workdir / f"{client}-yesterday.json").write_bytes(dumps(yesterday))
    cli("receive", *names)
    return cli


def test_schedules_follow_the_client_registry(fleet: Cli, deployed: Api) -> None:
    cli = fleet
    first = cli("schedules", "sync").stdout
    want = {f"Europe/Paris@{h:02d}": {"timezone": "Europe/Paris", "hour": h}
            for h in (6, 7, 8, 9)}
    want |= {f"Indian/Reunion@{h:02d}": {"timezone": "Indian/Reunion", "hour": h} for h in (6, 7)}
    assert "6 schedules; made 6 created, 0 updated, 0 deleted" in first
    on_server = deployed.schedules()
    assert {slug: s["parameters"] for slug, s in on_server.items()} == want
    for slug, schedule in on_server.items():
        timezone, hour = slug.split("@")
        assert schedule["schedule"]["cron"] == f"0 {int(hour)} * * *"
        assert schedule["schedule"]["timezone"] == timezone and schedule["active"]

    again = cli("schedules", "sync").stdout
    assert "made 0 created, 0 updated, 0 deleted" in again
    assert deployed.schedules() == on_server  # same ids: nothing was recreated

    # A new client in a new timezone adds its run and sweep slots; moving it to 05:00 adds
    # one; deactivating it, the last client of that timezone, removes all three.
    cli("clients", "activate", "fleet-atoll", "--name", "atoll", "--on", "2026-11-01",
        "--timezone", "Pacific/Noumea", "--run-hour", "6", "--deadline-hour", "7")
    dry = cli("schedules", "sync", "--dry-run").stdout
    assert "would create Pacific/Noumea@06" in dry and deployed.schedules() == on_server
    assert "made 2 created, 0 updated, 0 deleted" in cli("schedules", "sync").stdout
    cli("clients", "set-schedule", "fleet-atoll", "--run-hour", "5")
    assert "made 1 created, 0 updated, 0 deleted" in cli("schedules", "sync").stdout
    assert set(deployed.schedules()) == {*want, *(f"Pacific/Noumea@0{h}" for h in (5, 6, 7))}
    cli("clients", "deactivate", "fleet-atoll")
    assert "made 0 created, 0 updated, 3 deleted" in cli("schedules", "sync").stdout
    assert deployed.schedules() == on_server

    # A redeploy of the project keeps the schedules that sync made.
    prefect(deployed.url, "--no-prompt", "deploy", "--name", "dispatch-daily",
            cwd=deployed.project)
    assert deployed.schedules() == on_server


def test_sync_without_a_deployment_says_to_deploy_first(cli: Cli, prefect_api: str) -> None:
    failed = cli("schedules", "sync", "--deployment", "dispatch-daily/nowhere", check=2)
    assert "run `prefect deploy --all` first" in failed.stderr


def start_worker(cli: Cli, name: str) -> subprocess.Popen[bytes]:
    env = {**cli.env, "TOPORDER_SYNC_HOME": str(REPO), "PREFECT_WORKER_QUERY_SECONDS": "1",
           "PREFECT_LOGGING_LEVEL": "INFO"}
    log = (cli.workdir / f"{name}.log").open("wb")
    return subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", "toporder-sync",
                             "--limit", "2", "--name", name],
                            cwd=cli.workdir, env=env, stdout=log, stderr=subprocess.STDOUT)


@contextmanager
def two_workers(cli: Cli, name: str) -> Iterator[None]:
    """Two process workers of the pool, stopped on the way out."""
    workers = [start_worker(cli, f"{name}-{n}") for n in (1, 2)]
    try:
        yield
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()


def test_a_catch_up_run_by_two_workers_posts_each_client_day_once(fleet: Cli,
                                                                  deployed: Api) -> None:
    cli = fleet
    with two_workers(cli, "worker"):
        catch_up = deployed.deployment("catch-up/catch-up")
        last = (FIRST_DAY + timedelta(days=DAYS - 1)).isoformat()
        # Two shards of one catch-up of every active client, as `schedules sync --shards 2`
        # splits an hour: each worker may take one, together they cover each client once.
        runs = [deployed("POST", f"/deployments/{catch_up['id']}/create_flow_run",
                         {"parameters": {"date_from": FIRST_DAY.isoformat(), "date_to": last,
                                         "concurrency": 4, "shard": shard, "shards": 2}})
                for shard in (0, 1)]
        finished = deployed.wait([r["id"] for r in runs], 300)
    logs = "\n".join(p.read_text(errors="replace") for p in cli.workdir.glob("worker-*.log"))
    # The shard with the flagged day is red, named after who must act; the other is green.
    port_shard = next(shard for shard in (0, 1) if in_shard("fleet-port", shard, 2))
    by_shard = {r["name"]: r for r in finished}
    for shard in (0, 1):
        run = by_shard[f"catch-up {FIRST_DAY} to {last} #{shard}/2"]
        assert (run["state_type"], run["state_name"]) == (
            ("FAILED", "1 for Toporder") if shard == port_shard else ("COMPLETED", "All posted")
        ), logs

    days = [(FIRST_DAY + timedelta(days=n)).isoformat() for n in range(DAYS)]
    for client in CLIENTS:
        rows = json.loads(cli("status", client, "--json").stdout)
        assert [r["business_date"] for r in rows] == days
        for row in rows:
            flagged = client == "fleet-port" and row["business_date"] == BAD_DAY.isoformat()
            if flagged:
                assert (row["state"], row["error_category"], row["entry_number"]) == (
                    "flagged", "pos", None)
            else:
                assert row["state"] == "posted" and row["entry_number"] is not None
        numbers = [r["entry_number"] for r in rows if r["entry_number"] is not None]
        assert len(numbers) == len(set(numbers))

    task_runs = deployed("POST", "/task_runs/filter", {
        "flow_runs": {"id": {"any_": [r["id"] for r in finished]}}, "limit": 200})
    by_name = {run["name"]: run for run in task_runs
               if run["task_key"].startswith("client_days")}
    assert sorted(by_name) == sorted(f"{client} {days[0]} to {days[-1]}" for client in CLIENTS)
    for client in CLIENTS:
        state = by_name[f"{client} {days[0]} to {days[-1]}"]["state"]
        if client == "fleet-port":
            assert (state["type"], state["name"]) == ("FAILED", "POS data error")
            assert state["message"].startswith(
                f"{DAYS} client-days: {DAYS - 1} posted, 1 flagged (1 POS data error); "
                f"{BAD_DAY} POS data error: ")
        else:  # in date order: no day warned of a closure missing
            assert (state["type"], state["name"], state["message"]) == (
                "COMPLETED", "Posted", f"{DAYS} client-days: {DAYS} posted")


def test_the_daily_dispatch_runs_each_client_day_as_a_tagged_flow_run(fleet: Cli,
                                                                      deployed: Api) -> None:
    cli, yesterday = fleet, YESTERDAY
    paris = {c: v for c, v in CLIENTS.items() if v[0] == "Europe/Paris"}
    cli("receive", *(f"{client}-yesterday.json" for client in paris))
    with two_workers(cli, "dispatch-worker"):
        dispatch = deployed.deployment("dispatch-daily/dispatch-daily")
        runs = [deployed("POST", f"/deployments/{dispatch['id']}/create_flow_run",
                         {"parameters": {"timezone": "Europe/Paris", "hour": paris[c][1]}})
                for c in paris]
        finished = deployed.wait([r["id"] for r in runs], 300)
    assert [r["state_type"] for r in finished] == ["COMPLETED", "COMPLETED"], finished
    for client in paris:
        [run] = deployed("POST", "/flow_runs/filter", {
            "flow_runs": {"name": {"any_": [f"{client} {yesterday}"]}}, "limit": 10})
        assert run["parent_task_run_id"] is None  # a flow run of its own, not a subflow
        assert {f"client:{client}", "territory:metropole"} <= set(run["tags"])
        assert run["state_type"] == "COMPLETED", run
        assert run["state_name"] in ("Posted", "Posted with warnings"), run
        row = json.loads(cli("status", client, "--json").stdout)[-1]
        assert (row["business_date"], row["state"]) == (yesterday.isoformat(), "posted")

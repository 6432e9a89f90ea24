"""prefect.yaml declares its deployments at entrypoints Prefect can load; none is scheduled
there (the fleet's schedules belong to `schedules sync`), and the outbox's relay is no
deployment: it is a service of its own (`toporder-sync relay`, docs/relay.md)."""

from __future__ import annotations

from pathlib import Path

import yaml
from prefect.flows import load_flow_from_entrypoint

REPO = Path(__file__).resolve().parent.parent

EXPECTED = {
    # deployment name: (flow name, parameters)
    "client-day": ("post-client-day", {"client_id", "business_date"}),
    "catch-up": ("catch-up", {"date_from", "date_to", "clients", "concurrency", "shard",
                              "shards", "posted_artifacts", "processes"}),
    "dispatch-daily": ("dispatch-daily", {"timezone", "hour", "concurrency", "shard", "shards"}),
}


def test_every_deployment_entrypoint_loads_its_flow() -> None:
    project = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))
    deployments = {d["name"]: d for d in project["deployments"]}
    assert set(deployments) == set(EXPECTED)
    for name, deployment in deployments.items():
        assert deployment["work_pool"]["name"] == "toporder-sync"
        path, function = deployment["entrypoint"].split(":")
        flow = load_flow_from_entrypoint(f"{REPO / path}:{function}")
        flow_name, parameters = EXPECTED[name]
        assert flow.name == flow_name
        assert set(flow.parameters.properties) == parameters


def test_nothing_is_scheduled_in_the_file() -> None:
    # `toporder-sync schedules sync` owns the dispatch schedules; a `schedules` key on a fleet
    # deployment would make every `prefect deploy` replace them. The relay, once scheduled here
    # every minute (a fresh process and a run each time, mostly for nothing), is a service now.
    project = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))
    scheduled = [d["name"] for d in project["deployments"] if "schedules" in d or "schedule" in d]
    assert scheduled == []


def test_the_relay_service_runs_the_relay_outbox_flow() -> None:
    # Not deployed, but the flow of each round of `toporder-sync relay` (flows/relay.py).
    flow = load_flow_from_entrypoint(f"{REPO / 'flows' / 'relay.py'}:relay_outbox")
    assert flow.name == "relay-outbox"
    assert set(flow.parameters.properties) == {"limit", "max_attempts"}

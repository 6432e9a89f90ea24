"""prefect.yaml declares its deployments at entrypoints Prefect can load; only the relay is
scheduled there (the fleet's schedules belong to `schedules sync`)."""

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
    "relay-outbox": ("relay-outbox", {"limit", "max_attempts"}),
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


def test_only_the_relay_is_scheduled_in_the_file() -> None:
    # `toporder-sync schedules sync` owns the dispatch schedules; a `schedules` key on a fleet
    # deployment would make every `prefect deploy` replace them.
    project = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))
    scheduled = {d["name"]: d.get("schedules") for d in project["deployments"]
                 if "schedules" in d or "schedule" in d}
    assert scheduled == {"relay-outbox": [{"interval": 60}]}

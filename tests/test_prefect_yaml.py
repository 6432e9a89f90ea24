"""prefect.yaml declares the client-day flow at an entrypoint Prefect can load."""

from __future__ import annotations

from pathlib import Path

import yaml
from prefect.flows import load_flow_from_entrypoint

from toporder_sync.flows.daily import post_client_day

REPO = Path(__file__).resolve().parent.parent


def test_every_deployment_entrypoint_loads_the_flow() -> None:
    project = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))
    [deployment] = project["deployments"]
    assert deployment["work_pool"]["name"] == "toporder-sync"
    path, name = deployment["entrypoint"].split(":")
    flow = load_flow_from_entrypoint(f"{REPO / path}:{name}")
    assert flow.name == post_client_day.name == "post-client-day"
    assert set(flow.parameters.properties) == {"client_id", "business_date"}

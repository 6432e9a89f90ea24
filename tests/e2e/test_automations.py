"""The alerts on a real ``prefect server start`` process: ``toporder-sync automations install``
run as a user would, the shipped files read by Prefect's own ``automation create --from-file``,
and events emitted through ``prefect.events.emit_event`` reaching a real HTTP server on
127.0.0.1 as notifications.

The server is shared with the other end-to-end tests: every test leaves it as it found it (the
module removes the block and automations it installed).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import pytest
import yaml
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import BlockDocument
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import Automation

from e2e.conftest import BIN, Cli

REPO = Path(__file__).resolve().parents[2]
FILES = sorted((REPO / "automations").glob("*.yaml"))
NAMES_BY_FILE = {path.name: yaml.safe_load(path.read_text(encoding="utf-8"))["name"]
                 for path in FILES}
NAMES = list(NAMES_BY_FILE.values())
ENV = "TOPORDER_SYNC_ALERT_WEBHOOK_URL"
BLOCK = "toporder-alerts"
SLACK_URL = "https://hooks.slack.com/services/T0000/B0000/not-a-real-token"
OTHER_URL = "https://alerts.example.invalid/toporder?token=abc"
UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
T = TypeVar("T")


def on_server(api: str, work: Callable[[PrefectClient], Awaitable[T]]) -> T:
    async def run() -> T:
        async with PrefectClient(api) as client:
            return await work(client)

    return asyncio.run(run())


async def ours(client: PrefectClient) -> tuple[list[Automation], list[BlockDocument]]:
    """The automations named in the files and the blocks named toporder-alerts, any type."""
    automations = [a for name in NAMES for a in await client.read_automations_by_name(name)]
    blocks = [b for b in await client.read_block_documents(include_secrets=True)
              if b.name == BLOCK]
    return automations, blocks


async def remove_ours(client: PrefectClient) -> None:
    automations, blocks = await ours(client)
    for automation in automations:
        await client.delete_automation(automation.id)
    for block in blocks:
        await client.delete_block_document(block.id)


@pytest.fixture(autouse=True)
def clean_server(prefect_api: str) -> Iterator[None]:
    on_server(prefect_api, remove_ours)
    yield
    on_server(prefect_api, remove_ours)


def install(cli: Cli, url: str | None, *args: str,
            check: int | None = 0) -> subprocess.CompletedProcess[str]:
    cli.env.pop(ENV, None)
    if url is not None:
        cli.env[ENV] = url
    return cli("automations", *(args or ("install",)), "--dir", str(REPO / "automations"),
               check=check)


def saved(output: str) -> dict[str, tuple[str, str]]:
    """``{name: (created|updated, id)}`` from the lines of ``automations install``."""
    found = re.findall(r"^(?:block|automation) (\S+): (created|updated) \((\S+)\)$", output,
                       re.MULTILINE)
    return {name: (verb, ident) for name, verb, ident in found}


def test_install_twice_leaves_the_same_automations_and_one_block(cli: Cli,
                                                                  prefect_api: str) -> None:
    first = saved(install(cli, SLACK_URL).stdout)
    second = saved(install(cli, SLACK_URL).stdout)

    assert set(first) == {f"slack-webhook/{BLOCK}", *NAMES}
    assert {verb for verb, _ in first.values()} == {"created"}
    assert {verb for verb, _ in second.values()} == {"updated"}
    assert {n: i for n, (_, i) in first.items()} == {n: i for n, (_, i) in second.items()}
    automations, [block] = on_server(prefect_api, ours)
    assert sorted(a.name for a in automations) == sorted(NAMES)
    assert block.block_type and block.block_type.slug == "slack-webhook"
    assert block.data["url"] == SLACK_URL
    for automation in automations:
        assert str(automation.id) == first[automation.name][1]
        [action] = automation.actions
        assert isinstance(action, SendNotification) and action.block_document_id == block.id
        assert "{{ event.payload.client }}" in action.subject
        assert "{{ event.payload.business_date }}" in action.subject
        assert "event.payload.run_url" in action.body

    # Another URL: the Slack block gives way to a webhook block of the same name, the
    # automations (the same ones) now notify it.
    third = saved(install(cli, OTHER_URL).stdout)
    automations, [block] = on_server(prefect_api, ours)
    assert block.block_type and block.block_type.slug == "custom-webhook"
    assert block.data["secrets"]["url"] == OTHER_URL
    assert third[f"custom-webhook/{BLOCK}"] == ("created", str(block.id))
    assert {str(a.id) for a in automations} == {first[name][1] for name in NAMES}
    assert {getattr(a.actions[0], "block_document_id", None) for a in automations} \
        == {block.id}

    listed = install(cli, None, "list").stdout
    for automation in automations:
        assert (f"{automation.name}: {automation.id}, enabled, notifies "
                f"custom-webhook/{BLOCK}") in listed

    # A copy made by hand from a file is listed, then dropped by the next install, which keeps
    # the automation installed before.
    [copy] = UUID_TEXT.findall(prefect_create(REPO / "automations" / "flagged-day.yaml",
                                              prefect_api, cli.workdir).stdout)
    assert f"{NAMES_BY_FILE['flagged-day.yaml']}: {copy}, enabled, notifies nothing" \
        in install(cli, None, "list").stdout
    fourth = saved(install(cli, OTHER_URL).stdout)
    assert {n: i for n, (_, i) in fourth.items()} == {n: i for n, (_, i) in third.items()}
    automations, [_] = on_server(prefect_api, ours)
    assert sorted(a.name for a in automations) == sorted(NAMES)


def test_a_missing_variable_names_it_and_creates_nothing(cli: Cli, prefect_api: str,
                                                         tmp_path: Path) -> None:
    result = install(cli, None, check=2)
    assert result.stderr.strip().count("\n") == 0 and ENV in result.stderr, result.stderr
    assert result.stdout == ""
    cli.env["PREFECT_HOME"] = str(tmp_path / "no-profile")  # no profile naming a server
    cli.env.pop("PREFECT_API_URL")
    result = install(cli, SLACK_URL, check=2)
    assert result.stderr.startswith("error: PREFECT_API_URL is not set"), result.stderr
    result = install(cli, "http://alerts.example.com/hook", check=2)  # http, not to localhost
    assert ENV in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert on_server(prefect_api, ours) == ([], [])


def prefect_create(path: Path, api: str, home: Path) -> subprocess.CompletedProcess[str]:
    """``prefect automation create --from-file PATH``, as a user would run it."""
    env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_HOME": str(home / "prefect-cli"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    result = subprocess.run([str(BIN / "prefect"), "automation", "create", "--from-file",
                             str(path)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_prefect_automation_create_accepts_each_shipped_file(path: Path, prefect_api: str,
                                                             tmp_path: Path) -> None:
    [created] = UUID_TEXT.findall(prefect_create(path, prefect_api, tmp_path).stdout)

    automation = on_server(prefect_api, lambda client: client.read_automation(UUID(created)))
    assert automation is not None
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert automation.name == document["name"] and automation.actions == []
    assert automation.trigger.expect == set(document["trigger"]["expect"])  # type: ignore[union-attr]
    on_server(prefect_api, lambda client: client.delete_automation(UUID(created)))


class Recorder(BaseHTTPRequestHandler):
    """Records the JSON body of every POST."""

    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Handler", (Recorder,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts", received
    server.shutdown()
    server.server_close()


EMIT = """
import json, sys
from prefect.events import emit_event

for name, payload in json.loads(sys.argv[1]):
    emit_event(name, resource={"prefect.resource.id": f"toporder.client.{payload['client']}",
                               "prefect.resource.name": payload["client"]}, payload=payload)
"""


def test_events_reach_the_webhook_one_notification_each(
        cli: Cli, prefect_api: str, tmp_path: Path,
        recorder: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = recorder
    install(cli, url)
    run_url = "http://127.0.0.1:4200/runs/flow-run/0b6f3c1e"
    flagged = {"client": "zinc-e2e", "state": "POS data error", "category": "pos",
               "who": "Toporder", "rules": ["balanced"],
               "message": "debit 120.00 ≠ credit 119.00", "run_url": run_url}
    events = [
        # Two days of one client, a moment apart: each its own notification.
        ("toporder.day.flagged", {**flagged, "business_date": "2026-11-26"}),
        ("toporder.day.flagged", {**flagged, "business_date": "2026-11-27", "run_url": ""}),
        ("toporder.day.resolved", {"client": "zinc-e2e", "business_date": "2026-11-25",
                                   "state": "Posted", "was": "Mapping error",
                                   "message": "posted as entry VT-12", "run_url": run_url}),
        ("toporder.day.error", {"client": "zinc-e2e", "business_date": "2026-11-24",
                                "state": "Crashed", "message": "ledger unreachable"}),
    ]
    env = {**cli.env, "PREFECT_HOME": str(tmp_path / "emitter")}
    subprocess.run([sys.executable, "-c", EMIT, json.dumps(events)], env=env, check=True,
                   timeout=120)

    deadline = time.monotonic() + 60
    while len(received) < len(events) and time.monotonic() < deadline:
        time.sleep(0.5)
    by_subject = {r["subject"]: r["body"] for r in received}
    assert len(received) == len(events), received
    first = by_subject["Toporder zinc-e2e 2026-11-26: POS data error"]
    assert "business day 2026-11-26" in first and "Who must act: Toporder (pos)" in first
    assert "Rules: balanced" in first and "debit 120.00 ≠ credit 119.00" in first
    assert f"Run: {run_url}" in first
    assert "Run: (no run URL)" in by_subject["Toporder zinc-e2e 2026-11-27: POS data error"]
    resolved = by_subject["Toporder zinc-e2e 2026-11-25: Posted (was Mapping error)"]
    assert "posted as entry VT-12" in resolved
    error = by_subject["Toporder zinc-e2e 2026-11-24: internal error (Crashed)"]
    assert "the data team" in error and "ledger unreachable" in error

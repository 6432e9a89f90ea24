"""Screenshots of the Prefect UI after the demo: what a person watching the fleet sees.

Starts a throwaway ``prefect server`` with its UI on a free port of 127.0.0.1 (its own
PREFECT_HOME in a temporary folder), runs ``toporder-sync demo`` against it, then has Debian's
headless Chromium (``/usr/bin/chromium``, package ``chromium``) photograph four pages of the
UI (Prefect 3.9.1's default UI, the React one served under ``/v2``):

* ``runs-needs-action.png``: the Runs page filtered on the tag ``needs-action``;
* ``runs-client.png``: the Runs page filtered on one client's tag, ``client:<id>``;
* ``board.png``: the latest version of the ``board-<day>`` artifact of the demo's business day
  with the most flagged client-days (the earliest of a tie);
* ``client.png``: the latest version of the ``client-<id>`` artifact of the client of
  ``runs-client.png``.

The UI keeps its filters in the page's query string (the ``/runs/`` route's ``validateSearch``
in the bundle's ``index-*.js``): ``tags`` is a comma-separated list of tags, matched with
``any_``. An artifact key has a page of its own, ``/artifacts/key/<key>``, but it lists the
versions (their ids and runs) without their content; a version's content, the board's table or
the client's Markdown, is on ``/artifacts/artifact/<id>``, so the script asks the API for the
key's latest version and photographs that page.

The server is stopped however the script ends. Usage, from the repository's root::

    .venv/bin/python docs/screenshots/take.py [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

BIN = Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")
HERE = Path(__file__).resolve().parent
# The client whose runs and artifact are shown: the demo's richest story (a day refused
# before activation, an unknown payment method posted with a warning, then mapped and rerun).
CLIENT = "petit-zinc"
# Width and height of the browser window; the client's runs (nine of them) and the client's
# artifact (an entry of a dozen lines or more, then its recent days) need a taller window.
WINDOW = (1600, 1000)
TALL_WINDOW = (1600, 1800)
# Milliseconds of virtual time Chromium gives the page before its screenshot: the UI loads its
# bundle, then its settings, then the runs or artifacts, each a round trip to the server.
BUDGET_MS = 15000
SERVER_START_LIMIT = 180.0
DEMO_LIMIT = 900.0
CHROMIUM_LIMIT = 180.0


@dataclass(frozen=True, slots=True)
class Shot:
    """One page of the UI and the file its screenshot goes to."""

    file: str
    path: str
    query: dict[str, str]
    window: tuple[int, int] = WINDOW

    def url(self, base: str) -> str:
        query = urllib.parse.urlencode(self.query, safe=":,")
        return f"{base}{self.path}" + (f"?{query}" if query else "")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def offline_env() -> dict[str, str]:
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    env.pop("PREFECT_API_URL", None)
    env.pop("TOPORDER_SYNC_DATABASE_URL", None)
    return env


@contextmanager
def prefect_server(home: Path) -> Iterator[str]:
    """A ``prefect server`` with its UI, on a free port; its base URL (no ``/api``)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # The UI asks the server's /ui-settings where the API is: without PREFECT_UI_API_URL,
    # prefect 3.9.1 answers with the default port (4200), not the one given to --port.
    env = {**offline_env(), "PREFECT_HOME": str(home), "PREFECT_UI_ENABLED": "true",
           "PREFECT_UI_API_URL": f"{base}/api",
           "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false"}
    log_file = home / "server.log"
    command = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
               str(port)]
    with log_file.open("wb") as log:
        server = subprocess.Popen(command, env=env, stdout=log,  # noqa: S603 (our own venv)
                                  stderr=subprocess.STDOUT)
        try:
            wait_for_health(server, f"{base}/api/health", log_file)
            yield base
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def wait_for_health(server: subprocess.Popen[bytes], health: str, log_file: Path) -> None:
    deadline = time.monotonic() + SERVER_START_LIMIT
    while True:
        try:
            with urllib.request.urlopen(health, timeout=2) as answer:  # noqa: S310 (127.0.0.1)
                if answer.status == 200:
                    return
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"prefect server did not start:\n{log_file.read_text()}")
        time.sleep(0.5)


def run_demo(base: str, directory: Path) -> dict[str, Any]:
    """Run ``toporder-sync demo`` against the server; the summary of its last line."""
    env = {**offline_env(), "PREFECT_API_URL": f"{base}/api", "PREFECT_LOGGING_LEVEL": "WARNING"}
    print(f"running the demo against {base}/api …", flush=True)
    done = subprocess.run(  # noqa: S603 (our own venv)
        [str(BIN / "toporder-sync"), "demo", "--dir", str(directory)], env=env,
        capture_output=True, text=True, timeout=DEMO_LIMIT, check=False)
    last = done.stdout.strip().splitlines()[-1:] or [""]
    if done.returncode != 0 or not last[0].startswith("demo: "):
        raise SystemExit(f"the demo failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    summary: dict[str, Any] = json.loads(last[0].removeprefix("demo: "))
    return summary


def board_day(summary: dict[str, Any]) -> str:
    """The business day with the most flagged or missing client-days (the earliest of a tie)."""
    flagged = Counter(str(day["business_date"]) for day in summary["flagged_days"])
    if not flagged:
        raise SystemExit("the demo flagged no day: nothing for the board to show")
    return min(flagged, key=lambda day: (-flagged[day], day))


def latest_artifact_id(base: str, key: str) -> str:
    """The id of the latest version of the artifact ``key``, asked of the server's API."""
    answer = httpx.post(f"{base}/api/artifacts/latest/filter",
                        json={"artifacts": {"key": {"any_": [key]}}, "limit": 1}, timeout=30)
    answer.raise_for_status()
    collections: list[dict[str, Any]] = answer.json()
    if not collections:
        raise SystemExit(f"the demo published no artifact {key}")
    return str(collections[0]["latest_id"])


def shots(base: str, day: str) -> list[Shot]:
    board = latest_artifact_id(base, f"board-{day}")
    client = latest_artifact_id(base, f"client-{CLIENT}")
    return [
        Shot("runs-needs-action.png", "/v2/runs", {"tags": "needs-action"}),
        Shot("runs-client.png", "/v2/runs", {"tags": f"client:{CLIENT}"}, TALL_WINDOW),
        Shot("board.png", f"/v2/artifacts/artifact/{board}", {}),
        Shot("client.png", f"/v2/artifacts/artifact/{client}", {}, TALL_WINDOW),
    ]


def screenshot(url: str, window: tuple[int, int], target: Path, profile: Path) -> None:
    """Photograph ``url`` with headless Chromium into ``target`` (a fresh profile each time)."""
    profile.mkdir()
    width, height = window
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--hide-scrollbars",
               f"--user-data-dir={profile}", f"--window-size={width},{height}",
               f"--virtual-time-budget={BUDGET_MS}", f"--screenshot={target}", url]
    target.unlink(missing_ok=True)
    done = subprocess.run(command, capture_output=True, text=True,  # noqa: S603 (fixed binary)
                          timeout=CHROMIUM_LIMIT, check=False)
    if done.returncode != 0 or not target.exists():
        raise SystemExit(f"chromium could not photograph {url} ({done.returncode}):\n"
                         f"{done.stderr[-3000:]}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=HERE,
                        help="folder the PNG files go to (default: this script's folder)")
    args = parser.parse_args(argv)
    out: Path = args.out
    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} not found: install Debian's chromium (apt-get install "
                         "chromium)")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="toporder-screenshots-") as scratch:
        root = Path(scratch)
        (root / "prefect-home").mkdir()
        with prefect_server(root / "prefect-home") as base:
            summary = run_demo(base, root / "demo")
            day = board_day(summary)
            for number, shot in enumerate(shots(base, day)):
                url = shot.url(base)
                target = out / shot.file
                screenshot(url, shot.window, target, root / f"chromium-{number}")
                print(f"wrote {target} ({target.stat().st_size // 1024} KB) from "
                      f"{url.removeprefix(base)}", flush=True)


if __name__ == "__main__":
    main()

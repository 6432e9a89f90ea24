"""A real ``prefect server start`` process for the command-line end-to-end tests.

The server gets its own PREFECT_HOME (its SQLite database) in a temporary folder and listens on
a free port of 127.0.0.1; every CLI command of these tests talks to it through PREFECT_API_URL,
as a deployed installation would.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def prefect_server(home: Path, **settings: str) -> Iterator[str]:
    """A ``prefect server start`` process on a free port of 127.0.0.1, its PREFECT_HOME
    ``home`` and these settings; yields its API URL once healthy, stops it on the way out."""
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "PREFECT_UI_ENABLED": "false", **settings}
    env.pop("PREFECT_API_URL", None)
    log = (home / "server.log").open("wb")
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{api}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"prefect server did not start:\n{(home / 'server.log').read_text()}")
            time.sleep(0.5)
        yield api
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("prefect-home")
    with prefect_server(home) as api:
        yield api
    shutil.rmtree(home, ignore_errors=True)


class Cli:
    """Runs ``toporder-sync`` as a user would, against one ledger and the real server."""

    def __init__(self, workdir: Path, api: str) -> None:
        self.workdir = workdir
        self.env = {**os.environ, "PREFECT_API_URL": api,
                    "TOPORDER_SYNC_DATABASE_URL": f"sqlite:///{workdir / 'ledger.db'}",
                    "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
                    "PREFECT_LOGGING_LEVEL": "WARNING"}

    def __call__(self, *args: str, check: int | None = 0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(BIN / "toporder-sync"), *args], cwd=self.workdir,
                                env=self.env, capture_output=True, text=True, timeout=600)
        if check is not None:
            assert result.returncode == check, (result.returncode, result.stdout, result.stderr)
        return result


@pytest.fixture
def cli(tmp_path: Path, prefect_api: str) -> Cli:
    return Cli(tmp_path, prefect_api)

"""The pure stages in worker processes (``core_processes``): the same answers as in the
calling thread, whatever the closure, and a worker that dies costs no day."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import pytest
from samples import sample_bytes, sample_dir

from toporder_sync import core_processes
from toporder_sync.core import pipeline
from toporder_sync.core.errors import Category
from toporder_sync.core.model import ClientSettings, Territory
from toporder_sync.core_processes import CoreProcesses
from toporder_sync.simulator import dumps, generate_series

pytestmark = pytest.mark.skipif(not core_processes.fork_available(),
                                reason="worker processes are forked on Linux only")

SETTINGS = ClientSettings("c1", Territory.METROPOLE, {"revenue:20": "706200"},
                          {"CB": "511200"})


def _cases() -> list[tuple[str, bytes, str, pipeline.KnownPrevious | None]]:
    """Every sample of the contract, as its own client's and as another's, with and without
    its previous closure known, and a few simulated days."""
    cases = []
    for path in sorted(sample_dir().glob("*.json")):
        raw = sample_bytes(path.name)
        head = json.loads(raw)
        day = date.fromisoformat(head["closure"]["business_date"])
        known = pipeline.KnownPrevious(head["establishment"]["id"], day, None)
        cases += [(path.name, raw, head["integration_id"], known),
                  (path.name, raw, head["integration_id"], None),
                  (path.name, raw, "tpo_someone_else", known)]
    for document in generate_series(integration_id="tpo_sim", establishment_id="est-1",
                                    establishment_name="Sim", start=date(2026, 11, 2), days=3,
                                    faults_by_day={date(2026, 11, 3): frozenset({"unbalanced"})}):
        day = date.fromisoformat(document["closure"]["business_date"])
        cases.append((f"sim-{day}.json", dumps(document), "tpo_sim",
                      pipeline.KnownPrevious("est-1", day, None)))
    return cases


def test_workers_give_the_answers_of_the_calling_thread() -> None:
    cases = _cases()
    with CoreProcesses(1) as workers:
        assert len(multiprocessing.active_children()) == 1
        answers = [workers.assess(raw, name, SETTINGS, integration_id=client, known=known)
                   for name, raw, client, known in cases]
    expected = [pipeline.assess(raw, name, SETTINGS, integration_id=client, known=known)
                for name, raw, client, known in cases]
    assert answers == expected
    # Each kind of answer was given: rejected, previous needed, flagged, posted.
    assert {(a.read, a.previous_needed is not None, a.category, a.entry is not None)
            for a in answers} >= {(False, False, Category.POS, False),
                                  (True, True, None, False),
                                  (True, False, Category.POS, False),
                                  (True, False, None, True)}


def test_many_threads_share_the_workers() -> None:
    [(name, raw, client, known)] = [c for c in _cases() if c[0] == "valid-metropole.json"
                                    and c[3] is not None and c[2] != "tpo_someone_else"]
    expected = pipeline.assess(raw, name, SETTINGS, integration_id=client, known=known)
    with CoreProcesses(2) as workers, ThreadPoolExecutor(8) as threads:
        answers = list(threads.map(
            lambda _: workers.assess(raw, name, SETTINGS, integration_id=client, known=known),
            range(40)))
        assert len(multiprocessing.active_children()) == 2
    assert answers == [expected] * 40


def test_a_worker_that_dies_costs_no_day() -> None:
    name, raw, client, known = _cases()[0]
    expected = pipeline.assess(raw, name, SETTINGS, integration_id=client, known=known)
    warnings: list[str] = []
    with CoreProcesses(1, warn=warnings.append) as workers:
        [worker] = multiprocessing.active_children()
        os.kill(worker.pid or 0, signal.SIGKILL)
        time.sleep(0.5)  # the executor sees its worker gone
        assert workers.assess(raw, name, SETTINGS, integration_id=client,
                              known=known) == expected
        assert len(warnings) == 1 and warnings[0].startswith("a worker process died (")
        # later days too, in this process
        assert workers.assess(raw, name, SETTINGS, integration_id=client,
                              known=known) == expected


def test_no_workers_computes_in_the_calling_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    name, raw, client, known = _cases()[0]
    with CoreProcesses(0) as workers:
        assert multiprocessing.active_children() == []
        assert workers.assess(raw, name, SETTINGS, integration_id=client, known=known) == (
            pipeline.assess(raw, name, SETTINGS, integration_id=client, known=known))
    with pytest.raises(ValueError, match="processes must be 0 or more"):
        CoreProcesses(-1)
    monkeypatch.setattr(core_processes.os, "cpu_count", lambda: 2)
    assert core_processes.default_processes() == 1
    monkeypatch.setattr(core_processes.os, "cpu_count", lambda: 64)
    assert core_processes.default_processes() == core_processes.MAX_PROCESSES
    monkeypatch.setattr(core_processes.os, "cpu_count", lambda: 1)
    assert core_processes.default_processes() == 0


def test_client_settings_cross_to_a_worker_read_only() -> None:
    copy = pickle.loads(pickle.dumps(SETTINGS))  # noqa: S301 (our own bytes)
    assert copy == SETTINGS
    with pytest.raises(TypeError):
        copy.mappings["Espèces"] = "530000"  # type: ignore[index]


def test_workers_that_cannot_start_leave_the_days_to_the_calling_thread(
        monkeypatch: pytest.MonkeyPatch) -> None:
    name, raw, client, known = _cases()[0]

    def no_fork(*args: object, **kwargs: object) -> None:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(core_processes.multiprocessing.context.ForkProcess, "_Popen",
                        staticmethod(no_fork))
    warnings: list[str] = []
    with CoreProcesses(1, warn=warnings.append) as workers:
        assert workers.processes == 0 and multiprocessing.active_children() == []
        assert workers.assess(raw, name, SETTINGS, integration_id=client, known=known) == (
            pipeline.assess(raw, name, SETTINGS, integration_id=client, known=known))
    assert warnings == ["no worker process could be started ([Errno 12] Cannot allocate "
                        "memory): the days are computed in the flow's process"]

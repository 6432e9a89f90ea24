"""The pure stages of many client-days in worker processes, so that they get a core of their own.

A client-day is CPU-bound Python: reading the closure (JSON, JSON Schema), validating its
tables (pandas, pandera) and building its entry take most of a posted day's CPU on a SQLite
ledger, and hold the GIL. In threads, a catch-up's days, its ledger work and
its Prefect orchestration share one core whatever the machine. ``CoreProcesses`` runs the pure
stages (``pipeline.assess``: raw closure in, a few small records out) in worker processes; the
ledger transactions, the claim and everything Prefect stay in the flow's process, unchanged.

Promises:

* nothing changes for the ledger or for what a day becomes: the workers only compute, they
  never touch the ledger, the network or Prefect; a day's answer is the one
  ``pipeline.assess`` gives in the flow's process (tested);
* the workers are forked once, when the pool is entered, before any client-day runs: a forked
  child copies the modules already imported and warmed (its first day costs no more than the
  next), and a fork taken then copies no lock held by a day's thread. Started with ``spawn``
  or ``forkserver`` instead, a worker imports pandas and pandera afresh in every flow run,
  which cancelled the gain of a catch-up on two cores (measured: docs/operations.md, "Worker
  processes for the pure stages");
* a worker that dies (killed, out of memory) breaks the pool: the day it was computing, and
  every later day of the run, are computed in the flow's process instead, as without workers
  (the stages are pure, so computing one twice is harmless), with a warning (``warn``: the
  catch-up's run logger);
* each worker process, and the calling process for the days computed there, keeps its own
  ``closure.LineCache``: the records of ticket lines and payments already read, which the
  next days of the catch-up find again (a record depends on its text alone);
* where ``fork`` is not a safe start method (anything but Linux), with ``processes=0``, or
  when the workers cannot be started (a warning), every day is computed in the calling
  thread.

Why worker processes, with the measurement behind it: docs/operations.md ("Fitting a
morning").
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from types import TracebackType

from toporder_sync.core import pipeline
from toporder_sync.core.closure import LineCache
from toporder_sync.core.model import ClientSettings

log = logging.getLogger(__name__)

# Each worker is a copy-on-write image of the flow's process (a resident set of ~165 MB here,
# the pages it shares with the flow's process included): four at most.
MAX_PROCESSES = 4


def fork_available() -> bool:
    """Workers are forked on Linux only (``fork`` elsewhere is absent or unsafe)."""
    return sys.platform == "linux" and "fork" in multiprocessing.get_all_start_methods()


def default_processes() -> int:
    """Every core but one (left to the flow's process: ledger, Prefect), at most four."""
    if not fork_available():
        return 0
    return max(0, min(MAX_PROCESSES, (os.cpu_count() or 1) - 1))


def _ready() -> int:
    return os.getpid()


# The worker process's own records of lines and payments (``_start_worker``); None in any
# other process.
_worker_lines: LineCache | None = None


def _start_worker() -> None:
    """A new worker's records of lines and payments: its own, none copied from the parent."""
    global _worker_lines
    _worker_lines = LineCache()


def _assess_in_worker(raw: bytes, source: str, settings: ClientSettings, *,
                      integration_id: str,
                      known: pipeline.KnownPrevious | None) -> pipeline.Assessment:
    return pipeline.assess(raw, source, settings, integration_id=integration_id, known=known,
                           lines=_worker_lines)


class CoreProcesses:
    """``processes`` worker processes computing ``pipeline.assess``; a context manager.

    ``assess`` has the signature of ``pipeline.assess`` (``day.Assess``) and may be called from
    many threads at once; each call waits for its worker's answer.
    """

    def __init__(self, processes: int, warn: Callable[[str], object] = log.warning) -> None:
        if processes < 0:
            raise ValueError(f"processes must be 0 or more, not {processes}")
        self.processes = processes if fork_available() else 0
        self._warn = warn
        self._pool: ProcessPoolExecutor | None = None
        self._broken = threading.Event()
        self._lines = LineCache()  # for the days computed in this process

    def __enter__(self) -> CoreProcesses:
        if self.processes:
            pool = ProcessPoolExecutor(self.processes,
                                       mp_context=multiprocessing.get_context("fork"),
                                       initializer=_start_worker)
            try:
                # ``fork`` starts every worker on the first call, here, before any day's
                # thread runs.
                pool.submit(_ready).result()
            except (OSError, BrokenProcessPool) as exc:  # e.g. no memory left to fork
                pool.shutdown(wait=False, cancel_futures=True)
                self._warn(f"no worker process could be started ({exc}): the days are "
                           "computed in the flow's process")
                self.processes = 0
            else:
                self._pool = pool
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._pool is not None:
            # Not waiting: a day abandoned on its timeout may still be computing.
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def assess(self, raw: bytes, source: str, settings: ClientSettings, *, integration_id: str,
               known: pipeline.KnownPrevious | None) -> pipeline.Assessment:
        pool = self._pool
        if pool is not None and not self._broken.is_set():
            try:
                return pool.submit(_assess_in_worker, raw, source, settings,
                                   integration_id=integration_id, known=known).result()
            except BrokenProcessPool as exc:
                if not self._broken.is_set():
                    self._broken.set()
                    self._warn(f"a worker process died ({exc}): the days are computed in "
                               "the flow's process from now on")
        return pipeline.assess(raw, source, settings, integration_id=integration_id,
                               known=known, lines=self._lines)

"""Every use of Prefect beyond its documented public API, in one place.

The rest of the project goes through Prefect's public API only (``prefect.flow``, ``task``,
``tags``, ``prefect.runtime``, ``get_client``, the artifacts and events functions, the
settings). What it needs and Prefect documents no public way to do lives here, one function
each, saying what it reaches into, why, and what was looked for first. ``tests/
test_prefect_private.py`` checks each of them against the installed Prefect, so that an
upgrade that changes one fails there, by name, rather than somewhere in a fleet run.

Written against prefect 3.9.1, the version the lock file pins (``pyproject.toml`` allows
``>=3.9.1,<4``: an upgrade within it is tried by running the tests). Where the public way
was looked for: Prefect's API reference and guides (docs.prefect.io, v3: ``prefect.context``,
``prefect.events.worker``, ``prefect.deployments.flow_runs``, ``prefect.client.utilities``,
"nested flows", "runtime context") and its issue tracker (PrefectHQ/prefect).
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from prefect.context import AsyncClientContext, FlowRunContext, SyncClientContext, TaskRunContext
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import PrefectConsoleHandler
from prefect.settings import get_current_settings

__all__ = ["RESULT_STORAGE", "console_without_tracebacks", "context_outside_any_run",
           "drain_events", "mute_server_stop_line", "shared_api_clients",
           "shared_sync_client"]

# The logger Prefect's local mode announces its temporary server's start and stop on.
SERVER_LOGGER = "prefect"


def context_outside_any_run() -> contextvars.Context:
    """A copy of the current context in which no flow or task run is current: a flow called
    in it (``asyncio.create_task(..., context=...)``, ``Context.run``) is a top-level flow run,
    not a subflow of the run calling it, while keeping the rest of the context (tags, API
    clients, settings, the project's own context variables).

    Reaches into: ``FlowRunContext.__var__`` and ``TaskRunContext.__var__``, the ContextVars
    behind ``FlowRunContext.get()`` / ``TaskRunContext.get()``, set to ``None`` in the copy
    (``get()`` is ``__var__.get(None)``, and the flow engine makes a subflow whenever
    ``FlowRunContext.get()`` is not None).

    Why no public way: the API reference of ``prefect.context`` says its contexts "should
    never be directly mutated by the user" and offers only ways to *enter* a context
    (``hydrated_context``, the context managers), none to leave the current run's. The
    documented way to start an independent flow run from a flow is ``run_deployment(...,
    as_subflow=False)`` (``prefect.deployments.flow_runs``; the "nested flows" docs and
    PrefectHQ/prefect#11611 "Make subflows optional with run_deployment"): it needs a
    deployment and runs each client-day in a process of a worker, where the fleet runs them in
    its own process at a fraction of that cost (``flows.fleet``). Calling the flow from a
    new thread (which starts with an empty context) is public too, but loses the shared API
    clients (``shared_api_clients``: each new client costs CPU), the tags and the project's
    context variables, each to be rebuilt per run, and needs an event loop per thread."""
    detached = contextvars.copy_context()
    detached.run(_clear_run_contexts)
    return detached


def _clear_run_contexts() -> None:
    FlowRunContext.__var__.set(None)  # type: ignore[arg-type]
    TaskRunContext.__var__.set(None)  # type: ignore[arg-type]


@asynccontextmanager
async def shared_api_clients() -> AsyncIterator[None]:
    """One sync and one async Prefect API client for every run started inside, rather than
    new ones per top-level flow run (and per lookup of the server's default result storage).

    Reaches into: ``SyncClientContext.get_or_create()`` and ``AsyncClientContext.
    get_or_create()``, the context managers through which Prefect's engine and ``get_client``
    find the client already open in the context (an async client is reused only on the event
    loop it was opened on).

    Why no public way: the documented client helpers (``prefect.client.utilities.
    get_or_create_client``, ``inject_client``) reuse a client that is already in the context
    but do not put one there; ``get_client()`` opens a new one each time; the client contexts
    are described in their source docstrings, not in the guides, and ``prefect.context``'s API
    reference says its contexts are not for users to manage. No setting makes the engine
    reuse one client across top-level flow runs."""
    with shared_sync_client():
        async with AsyncClientContext.get_or_create():
            yield


@contextmanager
def shared_sync_client() -> Iterator[None]:
    """One sync Prefect API client for every sync run started inside (``shared_api_clients``'s
    sync half, for a process that runs sync flows only, such as the benchmark's baselines)."""
    with SyncClientContext.get_or_create():
        yield


def drain_events(timeout: float) -> None:
    """Send now, waiting ``timeout`` seconds at most, what this process has emitted (events,
    and the logs and states they carry), without stopping the process's ability to emit more.

    Reaches into: ``EventsWorker.drain_all(timeout=..., at_exit=False)``, a classmethod that
    the public ``EventsWorker`` (``prefect.events.worker``) inherits from Prefect's internal
    ``prefect._internal.concurrency.services.QueueService``.

    Why no public way: the API reference of ``prefect.events.worker`` documents
    ``EventsWorker.instance``, ``set_client_override`` and ``attach_related_resources_from_
    context``, not ``drain_all``; Prefect drains its workers itself only at interpreter
    shutdown (a ``threading`` exit hook), after a command's own output. Nothing in the docs
    or the issues found (searched: "EventsWorker drain_all flush events before exit") offers
    a public flush. Not an awaitable here: called outside any event loop (``drain_all``
    returns one when called from a running loop)."""
    EventsWorker.drain_all(timeout=timeout, at_exit=False)


# What every flow of the project names as its ``result_storage``, with ``persist_result=False``
# (``tasks.runtime``): the local result storage path of the settings in use, unused.
#
# The setting is public (``PREFECT_RESULTS_LOCAL_STORAGE_PATH``, ``prefect.settings``); what it
# relies on is not documented: that a flow naming its result storage spares the three
# ``GET /api/admin/storage`` calls prefect 3.9.1 makes otherwise on every flow run to learn the
# server's default result storage (seen with an httpx hook; ``tests/test_flow.py`` checks that
# the calls stay away, ``tests/test_prefect_private.py`` that the setting is still a path).
RESULT_STORAGE = Path(get_current_settings().results.local_storage_path)


class _WithoutTraceback(logging.Formatter):
    """A console formatter that leaves tracebacks out; the other handlers (the run's logs on
    the server) still get them."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self._inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text:  # a copy: the record itself keeps its traceback
            record = logging.makeLogRecord({**record.__dict__, "exc_info": None,
                                            "exc_text": None})
        return self._inner.format(record)


def console_without_tracebacks() -> None:
    """Prefect's console prints no traceback from now on: a command prints none unless asked to
    (``--debug``); the run's logs on the server keep them for the data team.

    Relies on: Prefect's default logging configuration (``prefect/logging/logging.yml``) putting
    its console handler, a ``PrefectConsoleHandler``, on the root logger, where run loggers'
    records arrive. The handler class is public; where it sits is configuration, not API, and
    no setting drops tracebacks from the console alone."""
    for handler in logging.getLogger().handlers:
        if (isinstance(handler, PrefectConsoleHandler)
                and not isinstance(handler.formatter, _WithoutTraceback)):
            handler.setFormatter(_WithoutTraceback(handler.formatter))


def mute_server_stop_line() -> None:
    """Leave out the INFO line ("Stopping temporary server") that Prefect's local mode logs at
    interpreter exit, after a command's result: raise ``SERVER_LOGGER`` to WARNING.

    Relies on: ``prefect.server.api.server.SubprocessASGIServer.stop`` logging on the
    ``prefect`` logger itself (``get_logger()``); no setting quiets that line alone. Call it
    once the process has run its flows: the ``prefect`` logger's level is also the run
    loggers'."""
    server_logger = logging.getLogger(SERVER_LOGGER)
    server_logger.setLevel(max(server_logger.getEffectiveLevel(), logging.WARNING))

"""What ``tasks.prefect_private`` takes from Prefect beyond its public API still holds.

Each test names the Prefect attribute it checks, so that an upgrade that changes one fails
here, saying which, before a fleet run misbehaves: runs nested as subflows, a new API client
per run, events sent after a command's last line.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect import flow, tags
from prefect.client.orchestration import get_client
from prefect.context import (
    AsyncClientContext,
    FlowRunContext,
    SyncClientContext,
    TagsContext,
    TaskRunContext,
)
from prefect.events.worker import EventsWorker
from prefect.logging.configuration import setup_logging
from prefect.logging.handlers import PrefectConsoleHandler
from prefect.runtime import flow_run
from prefect.settings import get_current_settings
from prefect.testing.utilities import prefect_test_harness

from toporder_sync.tasks import prefect_private


@pytest.fixture(scope="module")
def prefect_server() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.mark.parametrize("context_class", [FlowRunContext, TaskRunContext])
def test_the_run_contexts_are_still_read_from_the_context_var_it_clears(
        context_class: Any) -> None:
    """``FlowRunContext.__var__`` / ``TaskRunContext.__var__``: a ContextVar, and ``get()``
    still reads it (``None`` when it holds ``None``)."""
    var = context_class.__dict__.get("__var__")
    assert isinstance(var, contextvars.ContextVar), (context_class, var)
    entered = context_class.model_construct()
    with entered:
        assert context_class.get() is entered
        cleared = prefect_private.context_outside_any_run()
        assert cleared.run(context_class.get) is None
        assert context_class.get() is entered  # the caller's context is left as it was


def test_outside_any_run_keeps_the_rest_of_the_context() -> None:
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="")
    marker.set("kept")
    with tags("client:alpha"):
        cleared = prefect_private.context_outside_any_run()
    assert cleared.run(marker.get) == "kept"
    assert "client:alpha" in cleared.run(TagsContext.get).current_tags


@flow(name="detached-child", persist_result=False,
      result_storage=prefect_private.RESULT_STORAGE)
async def _child() -> str | None:
    run_id = flow_run.get_id()
    return str(run_id) if run_id else None


@flow(name="detached-parent", persist_result=False,
      result_storage=prefect_private.RESULT_STORAGE)
async def _parent() -> tuple[str | None, str | None]:
    outside = prefect_private.context_outside_any_run()
    detached = await asyncio.create_task(_child(), context=outside)
    nested = await _child()
    return detached, nested


def test_a_flow_called_outside_any_run_is_a_top_level_flow_run(prefect_server: None) -> None:
    """The behaviour ``flows.fleet.as_flow_run`` relies on, against a real server: from the
    cleared context, a flow run with no parent task run; called directly, a subflow (so that
    the check means something)."""
    detached_id, nested_id = asyncio.run(_parent())
    assert detached_id and nested_id

    async def parents() -> tuple[Any, Any]:
        async with get_client() as client:
            detached = await client.read_flow_run(detached_id)
            nested = await client.read_flow_run(nested_id)
        return detached.parent_task_run_id, nested.parent_task_run_id

    detached_parent, nested_parent = asyncio.run(parents())
    assert detached_parent is None
    assert nested_parent is not None


def test_shared_api_clients_hand_out_one_client_of_each_kind(prefect_server: None) -> None:
    """``SyncClientContext.get_or_create`` / ``AsyncClientContext.get_or_create``: inside,
    ``get_client`` returns the context's clients, the same each time."""
    assert inspect.isasyncgenfunction(inspect.unwrap(AsyncClientContext.get_or_create))
    assert inspect.isgeneratorfunction(inspect.unwrap(SyncClientContext.get_or_create))

    async def inside() -> None:
        async with prefect_private.shared_api_clients():
            sync_context, async_context = SyncClientContext.get(), AsyncClientContext.get()
            assert sync_context is not None and async_context is not None
            assert get_client(sync_client=True) is sync_context.client
            assert get_client(sync_client=True) is get_client(sync_client=True)
            assert get_client() is async_context.client
            assert get_client() is get_client()
        assert SyncClientContext.get() is None and AsyncClientContext.get() is None

    asyncio.run(inside())


def test_drain_events_relies_on_a_method_an_upgrade_must_keep() -> None:
    """``EventsWorker.drain_all(timeout=..., at_exit=...)``, inherited from Prefect's internal
    ``QueueService``: still there, with both parameters, and callable outside an event loop."""
    parameters = inspect.signature(EventsWorker.drain_all).parameters
    assert {"timeout", "at_exit"} <= set(parameters), parameters
    prefect_private.drain_events(timeout=5)  # nothing emitted in this process, or all sent


def test_result_storage_is_the_local_storage_path_setting() -> None:
    """``Settings.results.local_storage_path``: still a setting, still a path."""
    local = get_current_settings().results.local_storage_path
    assert isinstance(prefect_private.RESULT_STORAGE, Path)
    assert Path(local) == prefect_private.RESULT_STORAGE


def test_prefects_console_handler_is_on_the_root_logger_and_loses_tracebacks_only() -> None:
    """``console_without_tracebacks`` relies on Prefect's default logging configuration putting
    a ``PrefectConsoleHandler`` on the root logger."""
    setup_logging()
    consoles = [h for h in logging.getLogger().handlers
                if isinstance(h, PrefectConsoleHandler)]
    assert consoles, "Prefect's console handler is no longer on the root logger"
    formatter = consoles[0].formatter
    prefect_private.console_without_tracebacks()
    try:
        raise KeyError("a bug")
    except KeyError:
        record = logging.getLogger("prefect.test").makeRecord(
            "prefect.test", logging.ERROR, __file__, 1, "it failed", (), sys.exc_info())
    try:
        printed = consoles[0].format(record)
    finally:
        consoles[0].setFormatter(formatter)  # the rest of the session as it was
    assert "it failed" in printed and "Traceback" not in printed
    assert record.exc_info is not None, "the other handlers still get the traceback"
    assert "Traceback" in logging.Formatter().format(record)


def test_the_temporary_servers_stop_line_is_logged_on_the_prefect_logger() -> None:
    """``mute_server_stop_line`` relies on the local mode's server logging on ``prefect``."""
    from prefect.server.api import server

    assert server.subprocess_server_logger.name == prefect_private.SERVER_LOGGER
    source = inspect.getsource(server.SubprocessASGIServer.stop)
    assert "subprocess_server_logger.info" in source and "Stopping temporary server" in source

"""The tasks of one client-day: claim → admit → fetch → validate → map → build → load → report.

Every task is async and does its database work in a worker thread (``asyncio.to_thread``): a
sync task called from an async flow would block the event loop, API calls included, and the
subflows of a catch-up would then run one at a time whatever their concurrency.
"""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any

from prefect.artifacts import acreate_markdown_artifact
from prefect.events import emit_event

from toporder_sync import report, service
from toporder_sync.core import pipeline
from toporder_sync.core.errors import Category, Finding
from toporder_sync.core.mapping import MappingResult
from toporder_sync.core.model import ClientSettings, Closure, Entry, MethodMatch
from toporder_sync.ledger import repository
from toporder_sync.ledger.db import session_scope
from toporder_sync.ledger.repository import ClientRecord, PostResult
from toporder_sync.ledger.tables import DayState
from toporder_sync.sources import FetchedClosure, InboxSource
from toporder_sync.tasks import runtime
from toporder_sync.tasks.runtime import current_flow_run_id, engine, ledger_task

# A claim outlives a run that died without releasing it by this much, then lapses.
CLAIM_LEASE = timedelta(minutes=15)


@ledger_task(name="client")
async def client_record(client_id: str) -> ClientRecord:
    return await asyncio.to_thread(_client_record, client_id)


def _client_record(client_id: str) -> ClientRecord:
    with session_scope(engine()) as session:
        return repository.get_client(session, client_id)


@ledger_task(name="claim")
async def claim(client_id: str, business_date: date, run_id: str) -> bool:
    return await asyncio.to_thread(service.claim, engine(), client_id, business_date,
                                   run_id=run_id, now=runtime.now(), lease=CLAIM_LEASE)


@ledger_task(name="release")
async def release(client_id: str, business_date: date, run_id: str) -> None:
    await asyncio.to_thread(service.release, engine(), client_id, business_date,
                            run_id=run_id)


@ledger_task(name="admit")
async def admit(client: ClientRecord, business_date: date) -> service.Admission:
    return await asyncio.to_thread(service.admit, engine(), client, business_date,
                                   now=runtime.now(), flow_run_id=current_flow_run_id())


@ledger_task(name="fetch")
async def fetch(client_id: str, business_date: date) -> FetchedClosure | None:
    return await asyncio.to_thread(InboxSource(engine()).fetch, client_id, business_date)


@ledger_task(name="validate")
async def validate(fetched: FetchedClosure, client_id: str, integration_id: str,
                   settings: ClientSettings) -> tuple[Closure | None, tuple[Finding, ...]]:
    return await asyncio.to_thread(_validate, fetched, client_id, integration_id, settings)


def _validate(fetched: FetchedClosure, client_id: str, integration_id: str,
              settings: ClientSettings) -> tuple[Closure | None, tuple[Finding, ...]]:
    closure, findings = pipeline.read(fetched.raw, fetched.source, integration_id=integration_id)
    if closure is None:
        return None, findings
    previous = service.previous_closure(engine(), client_id, closure.establishment_id,
                                        closure.business_date)
    return closure, pipeline.validate(closure, settings, previous)


@ledger_task(name="map")
async def map_methods(closure: Closure, settings: ClientSettings) -> MappingResult:
    return pipeline.map_methods(closure, settings)


@ledger_task(name="build")
async def build(closure: Closure, settings: ClientSettings, mapping: MappingResult) -> Entry:
    return pipeline.build(closure, settings, mapping)


@ledger_task(name="load")
async def load(client_id: str, business_date: date, closure_id: int, entry: Entry,
               matches: tuple[MethodMatch, ...], warnings: tuple[Finding, ...]) -> PostResult:
    return await asyncio.to_thread(
        service.post, engine(), client_id, business_date, closure_id=closure_id, entry=entry,
        matches=matches, warnings=warnings, now=runtime.now(), flow_run_id=current_flow_run_id())


@ledger_task(name="flag")
async def flag(client_id: str, business_date: date, state: DayState,
               error_category: Category | None, findings: tuple[Finding, ...],
               closure_id: int | None, matches: tuple[MethodMatch, ...] = ()) -> None:
    await asyncio.to_thread(
        service.flag, engine(), client_id, business_date, state=state,
        error_category=error_category, findings=findings, closure_id=closure_id, matches=matches,
        now=runtime.now(), flow_run_id=current_flow_run_id())


@ledger_task(name="report", retries=0)
async def publish(client_id: str, business_date: date, markdown: str, description: str) -> None:
    await acreate_markdown_artifact(
        markdown, key=report.artifact_key(client_id, business_date), description=description
    )


FLAGGED_EVENT = "toporder.day.flagged"


def announce(client_id: str, business_date: date, state_name: str, category: Category,
             findings: tuple[Finding, ...]) -> None:
    """Emit the event an automation reacts to (``automations/flagged-day.yaml``)."""
    payload: dict[str, Any] = {
        "client": client_id,
        "business_date": business_date.isoformat(),
        "state": state_name,
        "category": category.value,
        "rules": sorted({f.rule for f in findings}),
        "message": report.summary(findings),
    }
    emit_event(FLAGGED_EVENT, resource={"prefect.resource.id": f"toporder.client.{client_id}",
                                        "prefect.resource.name": client_id},
               payload=payload)


__all__ = [
    "FLAGGED_EVENT",
    "admit",
    "announce",
    "build",
    "claim",
    "client_record",
    "fetch",
    "flag",
    "load",
    "map_methods",
    "publish",
    "release",
    "report",
    "validate",
]

"""The tasks of one client-day: admit → fetch → validate → map → build → load → report."""

from __future__ import annotations

from datetime import date

from prefect.artifacts import acreate_markdown_artifact

from toporder_sync import report, service
from toporder_sync.core import pipeline
from toporder_sync.core.errors import Category, Finding
from toporder_sync.core.mapping import MappingResult
from toporder_sync.core.model import ClientSettings, Closure, Entry, MethodMatch
from toporder_sync.ledger.repository import PostResult
from toporder_sync.ledger.tables import DayState
from toporder_sync.sources import FetchedClosure, InboxSource
from toporder_sync.tasks.runtime import current_flow_run_id, engine, ledger_task, now


@ledger_task(name="admit")
def admit(client_id: str, business_date: date) -> service.Admission:
    return service.admit(engine(), client_id, business_date, now=now(),
                         flow_run_id=current_flow_run_id())


@ledger_task(name="fetch")
def fetch(client_id: str, business_date: date) -> FetchedClosure | None:
    return InboxSource(engine()).fetch(client_id, business_date)


@ledger_task(name="validate")
def validate(fetched: FetchedClosure, client_id: str, integration_id: str,
             settings: ClientSettings) -> tuple[Closure | None, tuple[Finding, ...]]:
    closure, findings = pipeline.read(fetched.raw, fetched.source, integration_id=integration_id)
    if closure is None:
        return None, findings
    previous = service.previous_closure(engine(), client_id, closure.establishment_id,
                                        closure.business_date)
    return closure, pipeline.validate(closure, settings, previous)


@ledger_task(name="map")
def map_methods(closure: Closure, settings: ClientSettings) -> MappingResult:
    return pipeline.map_methods(closure, settings)


@ledger_task(name="build")
def build(closure: Closure, settings: ClientSettings, mapping: MappingResult) -> Entry:
    return pipeline.build(closure, settings, mapping)


@ledger_task(name="load")
def load(client_id: str, business_date: date, closure_id: int, entry: Entry,
         matches: tuple[MethodMatch, ...], warnings: tuple[Finding, ...]) -> PostResult:
    return service.post(engine(), client_id, business_date, closure_id=closure_id, entry=entry,
                        matches=matches, warnings=warnings, now=now(),
                        flow_run_id=current_flow_run_id())


@ledger_task(name="flag")
def flag(client_id: str, business_date: date, state: DayState, error_category: Category | None,
         findings: tuple[Finding, ...], closure_id: int | None,
         matches: tuple[MethodMatch, ...] = ()) -> None:
    service.flag(engine(), client_id, business_date, state=state, error_category=error_category,
                 findings=findings, closure_id=closure_id, matches=matches, now=now(),
                 flow_run_id=current_flow_run_id())


@ledger_task(name="report", retries=0)
async def publish(client_id: str, business_date: date, markdown: str, description: str) -> None:
    await acreate_markdown_artifact(
        markdown, key=report.artifact_key(client_id, business_date), description=description
    )


__all__ = [
    "admit",
    "build",
    "fetch",
    "flag",
    "load",
    "map_methods",
    "publish",
    "report",
    "validate",
]

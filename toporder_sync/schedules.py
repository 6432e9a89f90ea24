"""The schedules of the ``dispatch-daily`` deployment, derived from the client registry.

A fleet has one Prefect deployment for its daily runs, not one per client: Prefect's deployment
listing and ``prefect deploy --all`` do not scale to thousands of deployments, and every
deployment run starts a fresh Python process. That deployment carries one cron schedule per
distinct (timezone, run hour) of the active clients — ``0 H * * *`` in that timezone, with the
per-schedule parameters ``{"timezone": tz, "hour": H}`` — and each of its runs posts the
client-days of the clients due at that local hour, in-process.

A dispatch also runs again the days of that timezone still waiting for their closure, so the
hours between a client's run hour and its deadline hour get a schedule too (a "sweep": the same
dispatch, usually with no client due): the last one flags a still-missing closure.

This module promises that ``sync`` leaves on the deployment exactly those schedules: it creates
the missing ones, corrects the ones that drifted (cron, timezone or parameters changed by hand)
and deletes the rest, and a second ``sync`` changes nothing. A schedule is recognised by its
slug (``Europe/Paris@06``). Whether a schedule is active is left as an operator set it: pausing
one slot from the UI during an incident survives the next ``sync``.

The plan (:func:`plan`) is pure and tested without a server; :func:`sync` reads and writes the
Prefect API of ``PREFECT_API_URL``. Prefect is imported only there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from toporder_sync.core.errors import ConfigurationError

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.objects import DeploymentSchedule

FLOW_NAME = "dispatch-daily"
DEPLOYMENT = f"{FLOW_NAME}/dispatch-daily"


@dataclass(frozen=True, slots=True, order=True)
class Slot:
    """A local hour of a timezone at which some active clients have their daily run.

    With ``shards`` > 1 the hour's clients are split into that many disjoint shards (see
    ``fleet.in_shard``), one schedule each: the shards' dispatch runs start together and the
    workers of the pool, on as many machines, share them out.
    """

    timezone: str
    hour: int
    shard: int = 0
    shards: int = 1

    @property
    def slug(self) -> str:
        base = f"{self.timezone}@{self.hour:02d}"
        return base if self.shards == 1 else f"{base}#{self.shard}/{self.shards}"

    @property
    def cron(self) -> str:
        return f"0 {self.hour} * * *"

    @property
    def parameters(self) -> dict[str, Any]:
        if self.shards == 1:
            return {"timezone": self.timezone, "hour": self.hour}
        return {"timezone": self.timezone, "hour": self.hour, "shard": self.shard,
                "shards": self.shards}


@dataclass(frozen=True, slots=True)
class ExistingSchedule:
    """A schedule as the Prefect API returns it, reduced to what ``sync`` compares.

    ``cron`` is ``None`` for an interval or rrule schedule: never one of ours.
    """

    schedule_id: UUID
    slug: str | None
    cron: str | None
    timezone: str | None
    parameters: Mapping[str, Any]
    active: bool

    def matches(self, slot: Slot) -> bool:
        return (self.cron, self.timezone, dict(self.parameters)) == (
            slot.cron, slot.timezone, slot.parameters)


@dataclass(frozen=True, slots=True)
class Plan:
    """What ``sync`` does: schedules to create, correct (existing, wanted) and delete."""

    create: tuple[Slot, ...] = ()
    update: tuple[tuple[ExistingSchedule, Slot], ...] = ()
    delete: tuple[ExistingSchedule, ...] = ()
    keep: tuple[tuple[ExistingSchedule, Slot], ...] = ()

    @property
    def changes(self) -> int:
        return len(self.create) + len(self.update) + len(self.delete)


def desired_slots(pairs: Iterable[tuple[str, int]], shards: int = 1) -> tuple[Slot, ...]:
    """The slots of ``(timezone, run hour)`` pairs, deduplicated and sorted; bad ones refused.

    Each pair makes ``shards`` slots, one per shard of its clients.
    """
    if shards < 1:
        raise ConfigurationError(f"shards must be at least 1, not {shards}")
    slots: set[Slot] = set()
    for timezone, hour in pairs:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigurationError(f"unknown timezone {timezone!r} in the client registry") \
                from exc
        if not 0 <= hour <= 23:
            raise ConfigurationError(f"run hour {hour} of {timezone} is not an hour 0-23")
        slots.update(Slot(timezone, hour, shard, shards) for shard in range(shards))
    return tuple(sorted(slots))


def sweep_hours(clients: Iterable[tuple[str, int, int]]) -> set[tuple[str, int]]:
    """The hours after its run until its deadline, of every (timezone, run hour, deadline hour).

    A closure not in when its client's run fires leaves the day ``waiting``; every dispatch of
    that timezone runs waiting days again, so a waiting day needs a dispatch each hour until
    its deadline, the last one flagging it missing. A deadline at or before the run hour needs
    none: the run itself flags the day.
    """
    return {(timezone, hour) for timezone, run_hour, deadline_hour in clients
            for hour in range(run_hour + 1, min(deadline_hour, 23) + 1)}


def plan(desired: Sequence[Slot], existing: Sequence[ExistingSchedule]) -> Plan:
    """Turn ``existing`` into one schedule per ``desired`` slot, touching as little as possible.

    A schedule is matched to a slot by its slug; a slug-less schedule that already fires that
    slot (one made by hand) is adopted by giving it the slug; every other schedule is deleted.
    """
    wanted = {slot.slug: slot for slot in desired}
    create: list[Slot] = []
    update: list[tuple[ExistingSchedule, Slot]] = []
    keep: list[tuple[ExistingSchedule, Slot]] = []
    matched: set[UUID] = set()
    by_slug = {e.slug: e for e in existing if e.slug is not None}
    for slot in wanted.values():
        found = by_slug.get(slot.slug)
        if found is None:
            found = next((e for e in existing if e.slug is None and e.schedule_id not in matched
                          and e.matches(slot)), None)
            if found is None:
                create.append(slot)
                continue
            matched.add(found.schedule_id)
            update.append((found, slot))
            continue
        matched.add(found.schedule_id)
        (keep if found.matches(slot) else update).append((found, slot))
    delete = tuple(e for e in existing if e.schedule_id not in matched)
    return Plan(tuple(create), tuple(update), delete, tuple(keep))


def describe(plan_: Plan) -> list[str]:
    """One line per change, for the command line."""
    lines = [f"create {s.slug}: cron '{s.cron}' {s.timezone}, parameters {s.parameters}"
             for s in plan_.create]
    lines += [f"update {s.slug}: cron '{s.cron}' {s.timezone}, parameters {s.parameters} "
              f"(was {e.slug or 'no slug'}: cron '{e.cron}' {e.timezone}, {dict(e.parameters)})"
              for e, s in plan_.update]
    lines += [f"delete {e.slug or e.schedule_id}: cron '{e.cron}' {e.timezone}, "
              f"{dict(e.parameters)}" for e in plan_.delete]
    return lines


# --- the Prefect API -------------------------------------------------------------------------

def _existing(schedule: DeploymentSchedule) -> ExistingSchedule:
    from prefect.client.schemas.schedules import CronSchedule

    inner = schedule.schedule
    cron = inner.cron if isinstance(inner, CronSchedule) else None
    timezone = inner.timezone if isinstance(inner, CronSchedule) else None
    return ExistingSchedule(schedule.id, schedule.slug, cron, timezone,
                            dict(schedule.parameters), schedule.active)


def api_url() -> str:
    """The Prefect API the schedules live on; refused when unset (local mode has none)."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        raise ConfigurationError(
            "PREFECT_API_URL is not set: schedules live on a Prefect server "
            "(e.g. PREFECT_API_URL=http://127.0.0.1:4200/api after `prefect server start`)")
    return url


async def read_schedules(client: PrefectClient,
                         deployment: str = DEPLOYMENT) -> tuple[UUID, list[ExistingSchedule]]:
    """The deployment's id and schedules; a clear error when it has not been deployed."""
    from prefect.exceptions import ObjectNotFound

    try:
        found = await client.read_deployment_by_name(deployment)
    except ObjectNotFound as exc:
        raise ConfigurationError(
            f"deployment {deployment} not found on the Prefect server "
            f"{client.api_url}: run `prefect deploy --all` first (from the project folder, "
            f"with the work pool created)") from exc
    schedules = await client.read_deployment_schedules(found.id)
    return found.id, [_existing(s) for s in schedules]


async def apply(client: PrefectClient, deployment_id: UUID, plan_: Plan) -> None:
    """Carry out ``plan_``: deletions first, so that no slug is ever held twice."""
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.schedules import CronSchedule

    for gone in plan_.delete:
        await client.delete_deployment_schedule(deployment_id, gone.schedule_id)
    for current, slot in plan_.update:
        await client.update_deployment_schedule(
            deployment_id, current.schedule_id,
            schedule=CronSchedule(cron=slot.cron, timezone=slot.timezone),
            parameters=slot.parameters, slug=slot.slug)
    if plan_.create:
        await client.create_deployment_schedules(deployment_id, [
            DeploymentScheduleCreate(schedule=CronSchedule(cron=s.cron, timezone=s.timezone),
                                     active=True, parameters=s.parameters, slug=s.slug)
            for s in plan_.create])


async def sync(desired: Sequence[Slot], *, deployment: str = DEPLOYMENT,
               dry_run: bool = False) -> Plan:
    """Make the deployment's schedules those of ``desired``; returns what was (or would be) done.
    """
    import httpx
    from prefect.client.orchestration import get_client

    url = api_url()
    try:
        async with get_client() as client:
            deployment_id, existing = await read_schedules(client, deployment)
            wanted = plan(desired, existing)
            if not dry_run:
                await apply(client, deployment_id, wanted)
    except httpx.TransportError as exc:
        raise ConfigurationError(f"cannot reach the Prefect API at {url}: {exc}") from exc
    return wanted


async def read(deployment: str = DEPLOYMENT) -> list[ExistingSchedule]:
    """The deployment's schedules as they are on the server."""
    import httpx
    from prefect.client.orchestration import get_client

    url = api_url()
    try:
        async with get_client() as client:
            return (await read_schedules(client, deployment))[1]
    except httpx.TransportError as exc:
        raise ConfigurationError(f"cannot reach the Prefect API at {url}: {exc}") from exc

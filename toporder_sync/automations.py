"""The alerts: the Prefect automations kept in ``automations/*.yaml`` and the block they notify.

``install`` saves the notification block ``toporder-alerts`` from the webhook URL of
TOPORDER_SYNC_ALERT_WEBHOOK_URL (a Slack incoming webhook becomes Prefect's ``SlackWebhook``
block, any other URL a ``CustomWebhookNotificationBlock`` posting the JSON ``{"subject",
"body"}``), then creates each file's automation, or updates the automation of that name (so a
second install changes nothing, and an edited file changes the automation instead of adding a
second one). The URL and every file are read and checked before anything is written
(only the notification's Jinja templates are left to the server, which checks them).

A file is exactly what ``prefect automation create --from-file`` reads, plus one key Prefect
ignores, ``x-notification: {subject, body}``: a notification action needs the block's id, which
differs on every server, so the file cannot carry it. ``install`` appends to the file's
``actions`` a ``send-notification`` action with that subject and body on the saved block.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from uuid import UUID

import httpx
import yaml
from prefect.blocks.abstract import NotificationBlock
from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook
from prefect.client.orchestration import PrefectClient
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import Automation, AutomationCore
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.types import SecretDict
from pydantic import SecretStr, ValidationError

from toporder_sync.core.errors import ConfigurationError
from toporder_sync.notifications import check_url

ALERT_WEBHOOK_ENV = "TOPORDER_SYNC_ALERT_WEBHOOK_URL"
BLOCK_NAME = "toporder-alerts"
NOTIFICATION_KEY = "x-notification"
TAG = "toporder-sync"
SLACK_HOST = "hooks.slack.com"
_BLOCK_TYPES: tuple[type[NotificationBlock], ...] = (SlackWebhook,
                                                     CustomWebhookNotificationBlock)
# Stands for the block's id while a file is checked, before the block is saved.
_NO_BLOCK = UUID(int=0)


@dataclass(frozen=True, slots=True)
class AutomationFile:
    path: Path
    name: str
    document: Mapping[str, Any]

    def automation(self, block_id: UUID) -> AutomationCore:
        return automation(self.path, self.document, block_id)


@dataclass(frozen=True, slots=True)
class Saved:
    """What ``install`` did to one object on the server."""

    kind: Literal["block", "automation"]
    name: str
    id: UUID
    created: bool


@dataclass(frozen=True, slots=True)
class Installed:
    """An automation as the server has it (``id`` None: the file's is not on the server)."""

    name: str
    path: Path | None  # None: tagged toporder-sync but in no file
    id: UUID | None
    enabled: bool
    notifies: tuple[str, ...]  # "<block type slug>/<block name>" of each notification


def alert_webhook_url(environ: Mapping[str, str] = os.environ) -> str:
    """The URL alerts go to: https, or http to this machine only (tests, a local relay)."""
    url = environ.get(ALERT_WEBHOOK_ENV, "").strip()
    if not url:
        raise ConfigurationError(
            f"{ALERT_WEBHOOK_ENV} is not set: the URL alerts are posted to (a Slack incoming "
            "webhook https://hooks.slack.com/..., or any https URL receiving JSON "
            '{"subject", "body"})')
    try:
        return check_url(url)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{ALERT_WEBHOOK_ENV}: {exc}") from exc


def notification_block(url: str) -> NotificationBlock:
    """Slack's own block for a Slack incoming webhook, else a webhook posting JSON.

    The custom webhook's URL is kept among its secrets, as SlackWebhook keeps its own: a webhook
    URL often carries its token, and secrets are not shown by the UI nor returned by the API.
    """
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname == SLACK_HOST:
        return SlackWebhook(url=SecretStr(url))
    return CustomWebhookNotificationBlock(
        name=BLOCK_NAME, url="{{url}}", json_data={"subject": "{{subject}}", "body": "{{body}}"},
        secrets=SecretDict({"url": url}), headers=None, cookies=None)


def automation(path: Path, document: Mapping[str, Any], block_id: UUID) -> AutomationCore:
    """The file's automation, its notification sent through the block ``block_id``."""
    fields = {key: value for key, value in document.items() if key != NOTIFICATION_KEY}
    notification = document.get(NOTIFICATION_KEY)
    if not isinstance(notification, dict) or set(notification) != {"subject", "body"}:
        raise ConfigurationError(f"{path}: {NOTIFICATION_KEY} must hold subject and body")
    action = {"type": "send-notification", "block_document_id": str(block_id), **notification}
    try:
        return AutomationCore.model_validate(
            {**fields, "actions": [*fields.get("actions", []), action]})
    except ValidationError as exc:
        raise ConfigurationError(f"{path}: not a Prefect automation: {_first(exc)}") from exc


def read(directory: Path) -> list[AutomationFile]:
    """Every automation file of ``directory`` (``*.yaml``), checked; refused if there is none."""
    paths = sorted(directory.glob("*.yaml"))
    if not paths:
        raise ConfigurationError(f"no automation file (*.yaml) in {directory}")
    files = []
    for path in paths:
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"{path}: not YAML: {exc}".splitlines()[0]) from exc
        if not isinstance(document, dict):
            raise ConfigurationError(f"{path}: an automation file holds one mapping")
        files.append(AutomationFile(path, automation(path, document, _NO_BLOCK).name, document))
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise ConfigurationError(f"two files of {directory} name the same automation")
    return files


async def install(files: Sequence[AutomationFile], url: str,
                  client: PrefectClient) -> list[Saved]:
    """Save the block for ``url``, then create or update each file's automation on it."""
    with _api_errors(client):
        block = await save_block(notification_block(url), client)
        done = [block]
        for file in files:
            wanted = file.automation(block.id)
            automation_id, created = await create_or_update(wanted, client)
            done.append(Saved("automation", wanted.name, automation_id, created))
        return done


async def save_block(block: NotificationBlock, client: PrefectClient) -> Saved:
    """Create or update the block ``toporder-alerts``; drop one of that name of another type.

    Blocks are named per type, so moving from Slack to another webhook would otherwise leave
    the Slack block behind under the same name.
    """
    created = True
    for other in _BLOCK_TYPES:
        try:
            existing = await client.read_block_document_by_name(
                BLOCK_NAME, other.get_block_type_slug(), include_secrets=False)
        except ObjectNotFound:
            continue
        if other.get_block_type_slug() == block.get_block_type_slug():
            created = False
        else:
            await client.delete_block_document(existing.id)
    block_id = await block.asave(BLOCK_NAME, overwrite=True, client=client)
    return Saved("block", f"{block.get_block_type_slug()}/{BLOCK_NAME}", block_id, created)


async def create_or_update(wanted: AutomationCore, client: PrefectClient) -> tuple[UUID, bool]:
    """Create the automation, or update the one of that name; (its id, created)."""
    existing = await client.read_automations_by_name(wanted.name)
    if not existing:
        return await client.create_automation(wanted), True
    # Of several (`prefect automation create --from-file` run by hand, say), keep one already
    # notifying: the one installed before, whose id the UI's links and history refer to.
    first, *duplicates = sorted(existing, key=lambda a: (not _notifies(a), str(a.id)))
    await client.update_automation(first.id, wanted)
    for duplicate in duplicates:
        await client.delete_automation(duplicate.id)
    return first.id, False


def _notifies(automation: AutomationCore) -> bool:
    return any(isinstance(action, SendNotification) for action in automation.actions)


async def installed(files: Sequence[AutomationFile], client: PrefectClient) -> list[Installed]:
    """Each file's automations on the server (none, one, or copies of one name), then the others
    tagged ``toporder-sync``."""
    with _api_errors(client):
        rows = []
        for file in files:
            found = await client.read_automations_by_name(file.name)
            if not found:
                rows.append(Installed(file.name, file.path, None, False, ()))
            for automation in sorted(found, key=lambda a: str(a.id)):
                rows.append(await _installed(automation, file.path, client))
        known = {file.name for file in files}
        others = [a for a in await client.read_automations()
                  if TAG in a.tags and a.name not in known]
        for other in sorted(others, key=lambda a: (a.name, str(a.id))):
            rows.append(await _installed(other, None, client))
        return rows


async def _installed(automation: Automation, path: Path | None,
                     client: PrefectClient) -> Installed:
    blocks = []
    for action in automation.actions:
        if isinstance(action, SendNotification):
            try:
                block = await client.read_block_document(action.block_document_id,
                                                         include_secrets=False)
                slug = block.block_type.slug if block.block_type else "?"
                blocks.append(f"{slug}/{block.name}")
            except ObjectNotFound:
                blocks.append(f"(deleted block {action.block_document_id})")
    return Installed(automation.name, path, automation.id, automation.enabled, tuple(blocks))


@contextmanager
def _api_errors(client: PrefectClient) -> Iterator[None]:
    """The API's failures as one line each: an unreachable server, a refused request."""
    try:
        yield
    except httpx.TransportError as exc:
        raise ConfigurationError(f"cannot reach the Prefect API at {client.api_url}: "
                                 f"{exc}") from exc
    except PrefectHTTPStatusError as exc:
        raise ConfigurationError(f"the Prefect API at {client.api_url} refused: "
                                 f"{str(exc).splitlines()[0]}") from exc


def _first(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" + (f" (and {exc.error_count() - 1} more)"
                                         if exc.error_count() > 1 else "")

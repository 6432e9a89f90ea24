"""The Prefect automations kept in the repository (``automations/*.yaml``), created on a server.

A file holds one automation in the shape ``prefect automation create --from-file`` reads, except
that a notification action names its block (``block: <block type slug>/<block name>``) instead of
giving ``block_document_id``, an id that differs on every server. ``create_from_file`` resolves
the name and creates the automation through the API, or updates the automation of that name if
the server has one already (so running it again after editing the file changes the automation
instead of adding a second one); an unknown block is an error, raised before anything is
written.

    python -m toporder_sync.automations automations/flagged-day.yaml
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import yaml
from prefect.client.orchestration import PrefectClient, get_client
from prefect.events.schemas.automations import AutomationCore

from toporder_sync.core.errors import ConfigurationError


def read(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict):
        raise ConfigurationError(f"{path}: an automation file holds one mapping")
    return document


async def resolve(document: dict[str, Any], client: PrefectClient) -> AutomationCore:
    """The automation with each action's ``block`` name replaced by the block's id."""
    actions = []
    for action in document.get("actions", []):
        action = dict(action)
        name = action.pop("block", None)
        if name is not None:
            slug, _, block_name = str(name).partition("/")
            if not block_name:
                raise ConfigurationError(
                    f"block {name!r} is not '<block type slug>/<block name>'")
            block = await client.read_block_document_by_name(block_name, slug,
                                                             include_secrets=False)
            action["block_document_id"] = str(block.id)
        actions.append(action)
    return AutomationCore.model_validate({**document, "actions": actions})


async def create_from_file(path: Path, client: PrefectClient) -> tuple[UUID, bool]:
    """Create the file's automation, or update the one of that name; (its id, created)."""
    automation = await resolve(read(path), client)
    existing = await client.read_automations_by_name(automation.name)
    if not existing:
        return await client.create_automation(automation), True
    first, *duplicates = sorted(existing, key=lambda a: str(a.id))
    await client.update_automation(first.id, automation)
    for duplicate in duplicates:  # left by an older version that always created
        await client.delete_automation(duplicate.id)
    return first.id, False


async def _main(paths: list[str]) -> None:
    async with get_client() as client:
        for path in paths:
            automation_id, created = await create_from_file(Path(path), client)
            print(f"{'created' if created else 'updated'} automation {automation_id} "
                  f"from {path}")


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1:]))

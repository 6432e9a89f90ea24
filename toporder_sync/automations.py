"""The Prefect automations kept in the repository (``automations/*.yaml``), created on a server.

A file holds one automation in the shape ``prefect automation create --from-file`` reads, except
that a notification action names its block (``block: <block type slug>/<block name>``) instead of
giving ``block_document_id``, an id that differs on every server. ``create_from_file`` resolves
the name and creates the automation through the API; an unknown block is an error, raised
before anything is created.

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


async def create_from_file(path: Path, client: PrefectClient) -> UUID:
    return await client.create_automation(await resolve(read(path), client))


async def _main(paths: list[str]) -> None:
    async with get_client() as client:
        for path in paths:
            automation_id = await create_from_file(Path(path), client)
            print(f"created automation {automation_id} from {path}")


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1:]))

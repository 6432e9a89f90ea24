"""``toporder-sync automations``: the alerts, installed on the Prefect server by one command.

* ``install [--dir automations]`` saves the notification block ``toporder-alerts`` from
  TOPORDER_SYNC_ALERT_WEBHOOK_URL (no browser, no prompt), then creates or updates the
  automation of every ``*.yaml`` file of the folder (see :mod:`toporder_sync.automations`);
  a second run changes nothing. One line per block or automation: created or updated, its id.
* ``list [--dir automations]`` shows each file's automation on the server (its id, enabled,
  the block it notifies), then any other automation tagged ``toporder-sync``.

Both talk to the Prefect server of PREFECT_API_URL. Exit codes: 0 done; 2 configuration, one
line on stderr: the variable missing or not an https URL, no PREFECT_API_URL, a file that is not
an automation (nothing written in these cases), the server unreachable or refusing.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import click

from toporder_sync import cli_support
from toporder_sync.core.errors import ConfigurationError
from toporder_sync.runner import quiet_prefect_defaults

if TYPE_CHECKING:
    from toporder_sync.automations import AutomationFile, Installed, Saved

_DIR = click.option("--dir", "directory", default="automations", show_default=True,
                    type=click.Path(file_okay=False, path_type=Path),
                    help="The folder of the automation files (the project's automations/).")


@click.group("automations")
def automations_group() -> None:
    """The alerts: Prefect automations that notify a webhook of flagged and resolved days."""


@automations_group.command("install")
@_DIR
def install(directory: Path) -> None:
    """Save the block toporder-alerts and create or update every automation of --dir.

    The block posts to TOPORDER_SYNC_ALERT_WEBHOOK_URL: a Slack incoming webhook
    (https://hooks.slack.com/...) becomes a Slack block, any other https URL a webhook receiving
    JSON {"subject", "body"}. Running it again changes nothing.
    """
    quiet_prefect_defaults()
    with cli_support.errors():
        # Prefect is imported here, not at the top: `toporder-sync --help` stays instant.
        from toporder_sync import automations

        url = automations.alert_webhook_url()
        files = automations.read(directory)
        _require_api_url()
        done = asyncio.run(_install(files, url))
    for saved in done:
        click.echo(f"{saved.kind} {saved.name}: {'created' if saved.created else 'updated'} "
                   f"({saved.id})")


@automations_group.command("list")
@_DIR
def list_automations(directory: Path) -> None:
    """Each automation of --dir on the server: id, enabled, the block it notifies."""
    quiet_prefect_defaults()
    with cli_support.errors():
        from toporder_sync import automations

        files = automations.read(directory)
        _require_api_url()
        rows = asyncio.run(_installed(files))
    names = Counter(row.name for row in rows)
    for row in rows:
        where = str(row.path) if row.path else "in no file"
        if row.id is None:
            click.echo(f"{row.name}: not installed ({where})")
            continue
        click.echo(f"{row.name}: {row.id}, {'enabled' if row.enabled else 'disabled'}, "
                   f"notifies {', '.join(row.notifies) or 'nothing'} ({where})")
    if any(row.id is None or not row.notifies or names[row.name] > 1 for row in rows):
        click.echo("run `toporder-sync automations install` to make them what the files say "
                   "(one automation per file, each notifying the block toporder-alerts)")


async def _install(files: list[AutomationFile], url: str) -> list[Saved]:
    from prefect.client.orchestration import get_client

    from toporder_sync import automations

    async with get_client() as client:
        return await automations.install(files, url, client)


async def _installed(files: list[AutomationFile]) -> list[Installed]:
    from prefect.client.orchestration import get_client

    from toporder_sync import automations

    async with get_client() as client:
        return await automations.installed(files, client)


def _require_api_url() -> None:
    """Refuse Prefect's local mode (it would start a throwaway server): alerts need a server."""
    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:
        raise ConfigurationError(
            "PREFECT_API_URL is not set: automations live on a Prefect server "
            "(e.g. PREFECT_API_URL=http://127.0.0.1:4200/api after `prefect server start`)")

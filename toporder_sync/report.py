"""What a client-day's run tells a person: Markdown for the Prefect artifact, text for the CLI.

Pure formatting of core values; no Prefect, no database.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date

from toporder_sync.core.errors import Finding
from toporder_sync.core.model import Entry
from toporder_sync.core.money import format_display


def artifact_key(client_id: str, business_date: date) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    slug = re.sub(r"[^a-z0-9-]+", "-", client_id.lower()).strip("-")
    return f"day-{slug}-{business_date.isoformat()}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def entry_markdown(entry: Entry, number: int, warnings: Sequence[Finding]) -> str:
    """The entry as a table under its number, journal and piece, then its warnings."""
    rows = "\n".join(
        f"| {line.account} | {_cell(line.account_label)} | {_cell(line.label)} | "
        f"{format_display(line.debit) if line.debit else ''} | "
        f"{format_display(line.credit) if line.credit else ''} |"
        for line in entry.lines
    )
    text = (
        f"Entry n°{number} in journal {entry.journal}, piece {entry.piece_ref}: "
        f"{_cell(entry.label)}\n\n"
        "| account | account label | line | debit | credit |\n|---|---|---|---:|---:|\n"
        f"{rows}\n| **total** | | | **{format_display(entry.total_debit)}** | "
        f"**{format_display(entry.total_credit)}** |\n"
    )
    if warnings:
        text += "\n## Warnings\n\n" + findings_table(warnings)
    return text


def findings_table(findings: Sequence[Finding]) -> str:
    rows = "\n".join(
        f"| {f.category.value} | {f.rule} | `{_cell(f.field)}` | {_cell(f.message)} |"
        for f in findings
    )
    return f"| category | rule | field | message |\n|---|---|---|---|\n{rows}\n"


def failure_markdown(client_id: str, business_date: date, title: str,
                     findings: Sequence[Finding], action: str) -> str:
    return (f"# {client_id} {business_date}: {title}\n\n{action}\n\n"
            f"{findings_table(findings)}")


def summary(findings: Sequence[Finding], limit: int = 3) -> str:
    """A one-line message for a Prefect state or stderr: the first problems, then a count."""
    shown = "; ".join(f"{f.field}: {f.message}" for f in findings[:limit])
    more = len(findings) - limit
    return shown + (f" (and {more} more)" if more > 0 else "")

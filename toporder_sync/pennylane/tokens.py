"""Pennylane API tokens: found by name, in an environment variable or a Prefect Secret block.

The ledger stores only the token's NAME (``pennylane_settings.token_name``); the token itself
is read here when needed and kept in memory only. A missing token fails at once with an error
naming the variable or the block, never with a request sent without it. Nothing here logs,
prints or puts a token in a message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from toporder_sync.core.errors import ConfigurationError
from toporder_sync.ledger.tables import PennylaneTokenSource

ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Prefect block document names: lowercase letters, digits and dashes.
BLOCK_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@dataclass(frozen=True, slots=True)
class TokenRef:
    """Where a client's token is: ``env`` (a variable name) or ``block`` (a Secret block)."""

    source: PennylaneTokenSource
    name: str

    def __post_init__(self) -> None:
        if self.source == "env" and not ENV_NAME_PATTERN.match(self.name):
            raise ConfigurationError(f"{self.name!r} is not an environment variable name")
        if self.source == "block" and not BLOCK_NAME_PATTERN.match(self.name):
            raise ConfigurationError(
                f"{self.name!r} is not a Prefect block name (lowercase letters, digits, '-')")
        if self.source not in ("env", "block"):
            raise ConfigurationError(f"token source {self.source!r} is not 'env' or 'block'")

    def describe(self) -> str:
        if self.source == "env":
            return f"environment variable {self.name}"
        return f"Prefect Secret block {self.name!r}"


def load_secret_block(name: str) -> str:
    """The value of the Prefect Secret block ``name`` (needs the Prefect API)."""
    from prefect.blocks.system import Secret

    # _sync: the sync implementation even when called from a thread of an async flow, where
    # Prefect's dispatch would otherwise hand back a coroutine.
    block = cast("Secret[Any]", Secret.load(name, _sync=True))  # type: ignore[call-arg]
    return str(block.get())


def load_token(ref: TokenRef, *, environ: Mapping[str, str] | None = None,
               load_block: Callable[[str], str] = load_secret_block) -> str:
    """The token ``ref`` names; ``ConfigurationError`` naming the variable or block if missing."""
    if ref.source == "env":
        token = (os.environ if environ is None else environ).get(ref.name, "").strip()
        if not token:
            raise ConfigurationError(
                f"the Pennylane API token is missing: {ref.describe()} is not set or empty")
        return token
    try:
        token = load_block(ref.name).strip()
    except Exception as exc:  # Prefect raises several kinds; all mean "not there"
        # The cause is named by type only: a block's error text is not ours to trust.
        raise ConfigurationError(
            f"the Pennylane API token is missing: {ref.describe()} cannot be loaded "
            f"({type(exc).__name__}); create it with Secret(value=...).save({ref.name!r})"
        ) from None
    if not token:
        raise ConfigurationError(f"the Pennylane API token is missing: {ref.describe()} is empty")
    return token

"""Pushing posted entries (and reversals) to each client's Pennylane company, once each.

* ``client``: Pennylane's API v2 over httpx (timeouts, the per-token rate limit, 429s).
* ``tokens``: a client's API token, found by name in the environment or a Prefect Secret block.
* ``resolver``: ids of the sales journal and the ledger accounts, cached per company.
* ``store``: the ledger side, settings and one push row per entry (callers own transactions).
* ``sink``: the outbox handler of topic ``pennylane.entry`` that does the pushing.

This module imports none of them, so that ``toporder_sync.outbox`` can name ``handler`` below
without an import cycle (the sink builds on the outbox).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Engine

if TYPE_CHECKING:
    from toporder_sync.outbox import Handler

TOPIC = "pennylane.entry"


def handler(engine: Engine) -> Handler:
    """The outbox handler of topic ``pennylane.entry`` (``outbox.HANDLER_FACTORIES``)."""
    from toporder_sync.pennylane.sink import PennylaneHandler

    return PennylaneHandler(engine)

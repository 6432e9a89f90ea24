"""Pushing posted entries (and reversals) to each client's Pennylane company, once each.

* ``client``: Pennylane's API v2 over httpx (timeouts, the per-token rate limit, 429s).
* ``tokens``: a client's API token, found by name in the environment or a Prefect Secret block.
* ``resolver``: ids of the sales journal and the ledger accounts, cached per company.
* ``store``: the ledger side, settings and one push row per entry (callers own transactions).
* ``sink``: the outbox handler of topic ``pennylane.entry`` that does the pushing; it registers
  itself with the outbox when imported (``outbox.register``).

This module imports none of them: it only names the topic they share.
"""

from __future__ import annotations

TOPIC = "pennylane.entry"

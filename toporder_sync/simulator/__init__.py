"""The simulated Toporder: a POS closing its days, the faults it makes, the server it answers from.

Outside the accounting core on purpose: nothing in ``core/`` imports it. Its modules:

* ``till``: the payment methods, the venues and how they trade, the tickets a till rings up;
* ``faults``: what can go wrong, in a closure's content (``FAULTS``) and on the wire
  (``FaultRule``);
* ``closures``: deterministic closures in the v1 format, one day or a series;
* ``server``: the fake Toporder HTTP API on 127.0.0.1, its pushes and its webhook endpoint
  (imported on its own: it needs the ledger and an HTTP stack).

The names a test or a demo needs are re-exported here from ``till``, ``faults`` and
``closures``.
"""

from toporder_sync.simulator.closures import (
    SCHEMA_TAG,
    DrawerCount,
    build_from_tickets,
    dumps,
    generate_closure,
    generate_series,
)
from toporder_sync.simulator.faults import (
    FAULT_NAMES,
    FAULTS,
    RENAMED_CARD,
    STALE_RATE,
    UNKNOWN_METHOD,
    FaultRule,
)
from toporder_sync.simulator.till import (
    CARD,
    CASH,
    CHEQUE,
    CONECS,
    DELIVEROO,
    EDENRED,
    GIFT_CARD,
    METHODS,
    PAPER_VOUCHER,
    SWILE,
    UBER_EATS,
    VENUES,
)

__all__ = [
    "CARD",
    "CASH",
    "CHEQUE",
    "CONECS",
    "DELIVEROO",
    "EDENRED",
    "FAULTS",
    "FAULT_NAMES",
    "GIFT_CARD",
    "METHODS",
    "PAPER_VOUCHER",
    "RENAMED_CARD",
    "SCHEMA_TAG",
    "STALE_RATE",
    "SWILE",
    "UBER_EATS",
    "UNKNOWN_METHOD",
    "VENUES",
    "DrawerCount",
    "FaultRule",
    "build_from_tickets",
    "dumps",
    "generate_closure",
    "generate_series",
]

"""The fault-injection hook: named points where a test may kill the process on purpose.

``reached(name)`` is called at a few named places of a client-day and of the outbox relay
(``after_parse``, ``mid_write``, ``before_commit``, ``after_commit``, ``relay_after_send``), and
between the days of a reclassification (``reclassified:<business day>``, once that day's run
is over: ``toporder_sync.reclassify``).
When the environment variable ``TOPORDER_SYNC_CRASH_AT`` equals ``name``, the process sends
itself SIGKILL there: no ``finally``, no rollback from Python, no flush, exactly what a power
cut, an OOM kill or a ``kill -9`` does. The reliability suite (``tests/reliability``) uses it
to prove that a client-day killed anywhere is rerun to the same ledger, never half written
nor posted twice.

Otherwise it is a no-op costing one dictionary lookup; production never sets the variable.
"""

from __future__ import annotations

import os
import signal
from typing import Final

CRASH_AT: Final = "TOPORDER_SYNC_CRASH_AT"


def reached(name: str) -> None:
    """Die here, at once and without clean-up, if ``TOPORDER_SYNC_CRASH_AT`` is ``name``."""
    if os.environ.get(CRASH_AT) == name:
        os.kill(os.getpid(), signal.SIGKILL)

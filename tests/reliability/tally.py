"""The shared tally of the reliability suite: what each attack tried and what it broke.

Attacks call ``tried`` (a fault injected or a bad input fed, by class and kind) and
``violations`` (what the invariants found after the attack); the pytest plugin of
``conftest.py`` counts a failed test with no violation recorded as ``unhandled`` and writes
everything as JSON to ``$RELIABILITY_TALLY`` at the end of the session; ``report.py`` prints it.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from reliability.invariants import FINAL_KIND, Violations

# The classes of attack, in the order of the report, with the total of the final line their
# tries count in by default: "fault" (faults injected) or "input" (bad inputs).
CLASSES: dict[str, str] = {
    "crash": "fault",
    "concurrency": "fault",
    "bad_input": "input",
    "model": "fault",
    "upstream": "fault",
    "security": "input",
}

_tries: dict[str, Counter[str]] = defaultdict(Counter)
_totals: Counter[str] = Counter()
_violations: Counter[str] = Counter()
_details: list[str] = []
_current_test_violations: list[int] = [0]


def tried(cls: str, kind: str, count: int = 1, *, counts: str | None = "default") -> None:
    """One more try of ``kind`` in class ``cls``; ``counts``: the total of the final line it
    adds to ("fault", "input", the class's default, or None for a step or a check that
    injects nothing, such as a plain rerun, shown in the table only)."""
    if cls not in CLASSES:
        raise ValueError(f"unknown attack class {cls!r}")
    _tries[cls][kind] += count
    total = CLASSES[cls] if counts == "default" else counts
    if total is not None:
        _totals[total] += count


def record(found: Violations, where: str) -> Violations:
    """Add what the invariants found to the tally; return it for the caller to assert on."""
    for kind, items in found.found.items():
        _violations[FINAL_KIND[kind]] += len(items)
        _details.extend(f"{where}: {kind}: {item}" for item in items)
    _current_test_violations[0] += found.total
    return found


def unhandled(where: str) -> None:
    _violations["unhandled"] += 1
    _details.append(f"{where}: unhandled")


def start_test() -> None:
    _current_test_violations[0] = 0


def test_recorded_violations() -> int:
    return _current_test_violations[0]


def snapshot() -> dict[str, Any]:
    return {
        "tries": {cls: dict(kinds) for cls, kinds in _tries.items()},
        "classes": CLASSES,
        "totals": {"fault": _totals.get("fault", 0), "input": _totals.get("input", 0)},
        "violations": {k: _violations.get(k, 0)
                       for k in ("lost", "double_posted", "partial_writes", "unhandled")},
        "details": _details[:200],
    }


def write(path: str | None = None) -> None:
    target = path or os.environ.get("RELIABILITY_TALLY")
    if not target:
        return
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    Path(target).write_text(json.dumps(snapshot(), indent=2, sort_keys=True) + "\n")

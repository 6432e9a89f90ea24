"""Prints the tally of ``make reliability`` (written by the suite's pytest plugin) as a table
of what was tried, by class, then the final line; exits non-zero on any violation, or when
pytest or the audit failed (``--pytest-status``, ``--audit-status``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TITLES = {
    "crash": "1 crash injection",
    "concurrency": "2 concurrency",
    "bad_input": "3 bad inputs",
    "model": "4 model-based",
    "upstream": "5 upstream faults",
    "security": "6 security",
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("tally", type=Path)
    parser.add_argument("--pytest-status", type=int, default=0)
    parser.add_argument("--audit-status", type=int, default=0)
    args = parser.parse_args()
    if not args.tally.is_file():
        print(f"reliability: no tally at {args.tally}: the suite did not run")
        return 1
    tally = json.loads(args.tally.read_text())
    print(f"{'class':<20} {'what was tried':<48} {'count':>6}")
    print("-" * 76)
    for cls, title in TITLES.items():
        kinds = tally["tries"].get(cls, {})
        total = sum(kinds.values())
        for n, (kind, count) in enumerate(sorted(kinds.items())):
            print(f"{title if n == 0 else '':<20} {kind:<48} {count:>6}")
        print(f"{'':<20} {'total':<48} {total:>6}" if kinds else f"{title:<20} {'(none)':<48}")
    faults, inputs = tally["totals"]["fault"], tally["totals"]["input"]
    violations = tally["violations"]
    for detail in tally.get("details", [])[:20]:
        print(f"  violation: {detail}")
    if args.pytest_status:
        print(f"  pytest exited {args.pytest_status}")
    unhandled = violations["unhandled"]
    print(f"reliability: {faults} faults injected, {inputs} bad inputs, {violations['lost']} lost, "
          f"{violations['double_posted']} double-posted, {violations['partial_writes']} partial "
          f"writes, {unhandled} unhandled")
    failed = sum(violations.values()) or args.pytest_status or args.audit_status
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

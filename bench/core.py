"""CPU per closure of the pure core, stage by stage, against pandera: a measurement, not a test.

It simulates ``--days`` closures of a restaurant (about 50 KB and up to a thousand ticket lines
each, as the simulator makes them), then measures the CPU time (``time.process_time``) of each
stage of ``core.pipeline`` on each closure, ``--runs`` times, and prints the median per closure:

* parse: ``pipeline.read`` (strict JSON, JSON Schema, the ``Closure`` record);
* validate: ``pipeline.validate`` (the closure's tables through their pandera models);
* map: ``pipeline.map_methods``;
* build: ``pipeline.build`` (the entry, and its lines' invariants: ``entry.check_entry_lines``);
* process: ``pipeline.process``, the whole of it.

The baseline is pandera's own ``validate(..., lazy=True)`` of the same closure's tables
(``core.validate.closure_tables``, made beforehand), measured in the same process: ``process``
is printed as a multiple of it.

    .venv/bin/python bench/core.py
    .venv/bin/python bench/core.py --days 5 --runs 3
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable
from datetime import date

from pandera.errors import SchemaErrors

from toporder_sync.core import pipeline
from toporder_sync.core import validate as validating
from toporder_sync.core.closure import parse_closure
from toporder_sync.core.model import ClientSettings
from toporder_sync.simulator import dumps, generate_series

INTEGRATION_ID = "tpo_bench"
FIRST_DAY = date(2026, 11, 2)


def cpu_ms(work: Callable[[], object], runs: int) -> float:
    """Median CPU milliseconds of ``work`` over ``runs`` runs."""
    times = []
    for _ in range(runs):
        start = time.process_time()
        work()
        times.append(time.process_time() - start)
    return statistics.median(times) * 1000


Tables = tuple[validating.ClosureTable, ...]


def pandera_validate(tables: Tables) -> None:
    """The baseline: pandera's ``validate(..., lazy=True)`` of each table."""
    for table in tables:
        with contextlib.suppress(SchemaErrors):
            table.schema.validate(table.frame, lazy=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=20, help="closures to measure")
    parser.add_argument("--runs", type=int, default=5, help="runs of each stage per closure")
    args = parser.parse_args()

    raws = [dumps(document) for document in generate_series(
        integration_id=INTEGRATION_ID, establishment_id="bench", establishment_name="Bench",
        start=FIRST_DAY, days=args.days)]
    settings = ClientSettings("bench")
    closures = [parse_closure(raw, "bench.json") for raw in raws]
    mappings = [pipeline.map_methods(closure, settings) for closure in closures]
    entries = [pipeline.build(c, settings, m) for c, m in zip(closures, mappings, strict=True)]
    tables = [validating.closure_tables(closure, settings.territory) for closure in closures]
    print(f"{len(raws)} closures, {sum(map(len, raws)) // len(raws):,} bytes and "
          f"{sum(sum(len(t.lines) for t in c.tickets) for c in closures) // len(closures):,} "
          f"ticket lines on average, "
          f"{sum(len(e.lines) for e in entries) / len(entries):.0f} entry lines")

    stages: dict[str, Callable[[int], object]] = {
        "parse": lambda i: pipeline.read(raws[i], "bench.json", integration_id=INTEGRATION_ID),
        "validate": lambda i: pipeline.validate(closures[i], settings),
        "map": lambda i: pipeline.map_methods(closures[i], settings),
        "build": lambda i: pipeline.build(closures[i], settings, mappings[i]),
        "process": lambda i: pipeline.process(raws[i], "bench.json", settings,
                                              integration_id=INTEGRATION_ID),
        "pandera": lambda i: pandera_validate(tables[i]),
    }
    for stage in stages.values():  # warm up (imports, first calls) before measuring
        stage(0)
    medians = {
        name: statistics.median(cpu_ms(lambda i=i, s=stage: s(i), args.runs)  # type: ignore[misc]
                                for i in range(len(raws)))
        for name, stage in stages.items()
    }
    for name, ms in medians.items():
        print(f"{name:>9}  {ms:8.2f} ms CPU per closure (median)")
    print(f"  process = {medians['process'] / medians['pandera']:.1f} × pandera's validate")


if __name__ == "__main__":
    main()

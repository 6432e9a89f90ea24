"""The two measured choices of reading a closure, each against its alternative in one process.

On ``--days`` simulated closures of a restaurant (as ``bench/core.py`` makes them), the median
CPU per closure (``time.process_time``) of:

* the schema check: ``jsonschema``'s Draft 2020-12 validator on the decoded document, against
  the code ``fastjsonschema`` generates from the same schema (``core.closure`` passes a closure
  with the latter and lets the former word the findings of one that fails);
* the JSON decoding: ``json.loads`` with a Python ``object_pairs_hook`` making a dict of each
  object (``core.closure._unique_keys``, which refuses a duplicated key), against the C
  ``tuple`` hook the fast reading uses.

Each line prints both and their ratio. A measurement, not a test:

    .venv/bin/python -m bench.closure_read
    .venv/bin/python -m bench.closure_read --days 5 --runs 3
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

import fastjsonschema
from jsonschema import Draft202012Validator

from bench.core import cpu_ms
from toporder_sync.core import closure
from toporder_sync.simulator import dumps, generate_series


def median_per_closure(work: Callable[[Any], object], items: list[Any], runs: int) -> float:
    return statistics.median(cpu_ms(lambda item=item: work(item), runs)  # type: ignore[misc]
                             for item in items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=10, help="closures to measure")
    parser.add_argument("--runs", type=int, default=5, help="runs of each per closure")
    args = parser.parse_args()

    texts = [dumps(document).decode() for document in generate_series(
        integration_id="tpo_bench", establishment_id="bench", establishment_name="Bench",
        start=date(2026, 11, 2), days=args.days)]
    documents = [json.loads(text, parse_float=Decimal) for text in texts]
    schema = closure._SCHEMA  # the schema with its $refs inlined, as the reading uses it
    interpreted = Draft202012Validator(schema)
    generated = fastjsonschema.compile(
        {key: value for key, value in schema.items() if key not in ("$schema", "$id")},
        use_default=False, use_formats=False)
    pairs: Callable[[list[tuple[str, Any]]], dict[str, Any]] = closure._unique_keys

    comparisons = {
        "schema check": (lambda d: interpreted.validate(d), lambda d: generated(d), documents),
        "JSON decoding": (lambda t: json.loads(t, parse_float=Decimal, object_pairs_hook=pairs),
                          lambda t: json.loads(t, parse_float=Decimal, object_pairs_hook=tuple),
                          texts),
    }
    print(f"{len(texts)} closures, {sum(map(len, texts)) // len(texts):,} bytes on average")
    for name, (alternative, chosen, items) in comparisons.items():
        alternative(items[0]), chosen(items[0])  # warm up
        before = median_per_closure(alternative, items, args.runs)
        after = median_per_closure(chosen, items, args.runs)
        print(f"{name:>14}  {before:7.2f} ms → {after:6.2f} ms CPU per closure "
              f"(÷ {before / after:.1f})")


if __name__ == "__main__":
    main()

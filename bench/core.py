"""CPU per closure of the pure core, stage by stage, against a floor: a measurement, not a test.

It simulates ``--days`` closures of a restaurant (about 50 KB and up to a thousand ticket lines
each, as the simulator makes them), then measures the CPU time (``time.process_time``) of each
stage of ``core.pipeline`` on each closure, ``--runs`` times, and prints the median per closure:

* parse: ``pipeline.read`` (strict JSON, JSON Schema, the ``Closure`` record);
* validate: ``pipeline.validate`` (the closure's tables through their pandera models);
* map: ``pipeline.map_methods``;
* build: ``pipeline.build`` (the entry, and its lines' invariants: ``entry.check_entry_lines``);
* process: ``pipeline.process``, the whole of it.

The floor is what no implementation of the core can avoid, measured in the same process on the
same closures: pandera validation of the ticket lines (``FloorTicketLines``, one row per line),
one groupby of them, and inserting the entry's dozen lines into an in-memory SQLite table.
``process`` is printed as a multiple of it.

    .venv/bin/python bench/core.py
    .venv/bin/python bench/core.py --days 5 --runs 3
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import time
from collections.abc import Callable
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from toporder_sync.core import pipeline
from toporder_sync.core.closure import parse_closure
from toporder_sync.core.model import ClientSettings, Closure
from toporder_sync.schemas.tables import Text
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


def ticket_lines(closure: Closure) -> pd.DataFrame:
    lines = [(t.number, ln) for t in closure.tickets for ln in t.lines]
    return pd.DataFrame({
        "ticket": pd.Series([number for number, _ in lines], dtype="str"),
        "kind": pd.Series([ln.kind.value for _, ln in lines], dtype="str"),
        "vat_rate": pd.Series([None if ln.vat_rate is None else str(ln.vat_rate)
                               for _, ln in lines], dtype="str"),
        "gross": pd.Series([int(ln.gross * 100) for _, ln in lines], dtype="int64"),
    })


class FloorTicketLines(pa.DataFrameModel):
    """The floor's model of the ticket lines, fixed here so that no change to the pipeline's
    own models moves the baseline: ``schemas.TicketLinesTable`` as it was until 2026-12-07,
    its checks computing on the columns' numpy values as they did then.

    (``TicketLinesTable``'s ``exact_money`` then became pandera's built-in ``ge``, which
    ``schemas.compiled`` reads from the array; validated by pandera itself, as the floor is,
    that costs a little more: 2.23–2.26 against 2.21 ms a closure, ten closures in a loop.)
    """

    ticket: Series[Text] = pa.Field()
    kind: Series[Text] = pa.Field(isin=["sale", "refund", "gift_card", "tip"])
    vat_rate: Series[Text] = pa.Field(nullable=True)
    gross: Series[int] = pa.Field()

    class Config:
        strict = True
        coerce = False

    @pa.check("gross", name="exact_money")
    def exact_money(cls, series: pd.Series[Any]) -> pd.Series[bool]:
        return pd.Series(np.asarray(series.to_numpy() >= 0, dtype=bool), index=series.index)

    @pa.dataframe_check(name="ticket_line_rate")
    def ticket_line_rate(cls, df: pd.DataFrame) -> pd.Series[bool]:
        kinds, rates = (df[name].array.to_numpy() for name in ("kind", "vat_rate"))
        taxed = (kinds == "sale") | (kinds == "refund")
        return pd.Series(np.asarray(taxed == ~pd.isna(rates), dtype=bool), index=df.index)


def floor(frame: pd.DataFrame, rows: list[tuple[str, str, int, int]]) -> None:
    FloorTicketLines.validate(frame, lazy=True)
    frame.groupby(["kind", frame["vat_rate"].fillna("")])["gross"].sum()
    with sqlite3.connect(":memory:") as ledger:
        ledger.execute("create table line (account text, label text, debit int, credit int)")
        ledger.executemany("insert into line values (?, ?, ?, ?)", rows)


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
    frames = [ticket_lines(closure) for closure in closures]
    rows = [[(ln.account, ln.label, int(ln.debit * 100), int(ln.credit * 100))
             for ln in entry.lines] for entry in entries]
    print(f"{len(raws)} closures, {sum(map(len, raws)) // len(raws):,} bytes and "
          f"{sum(map(len, frames)) // len(frames):,} ticket lines on average, "
          f"{sum(len(e.lines) for e in entries) / len(entries):.0f} entry lines")

    stages: dict[str, Callable[[int], object]] = {
        "parse": lambda i: pipeline.read(raws[i], "bench.json", integration_id=INTEGRATION_ID),
        "validate": lambda i: pipeline.validate(closures[i], settings),
        "map": lambda i: pipeline.map_methods(closures[i], settings),
        "build": lambda i: pipeline.build(closures[i], settings, mappings[i]),
        "process": lambda i: pipeline.process(raws[i], "bench.json", settings,
                                              integration_id=INTEGRATION_ID),
        "floor": lambda i: floor(frames[i], rows[i]),
    }
    for stage in stages.values():  # warm caches (compiled schemas, imports) before measuring
        stage(0)
    medians = {
        name: statistics.median(cpu_ms(lambda i=i, s=stage: s(i), args.runs)  # type: ignore[misc]
                                for i in range(len(raws)))
        for name, stage in stages.items()
    }
    for name, ms in medians.items():
        print(f"{name:>9}  {ms:8.2f} ms CPU per closure (median)")
    print(f"  process = {medians['process'] / medians['floor']:.1f} × floor")


if __name__ == "__main__":
    main()

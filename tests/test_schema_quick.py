"""``schemas.quick.passes`` is True on valid closures' tables, and never where pandera refuses.

The quick answer runs the schemas' own checks through pandera's public API; a table it does not
pass goes to ``validate(..., lazy=True)``, which reports. So it must pass the tables of valid
closures (or it buys nothing), never pass a frame that pandera's ``validate`` refuses, whatever
is changed in it, and the pandera API it reads must exist on the installed version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandera import dtypes
from pandera.engines import pandas_engine
from pandera.errors import SchemaError, SchemaErrors
from samples import sample_bytes

from toporder_sync.core import validate as validating
from toporder_sync.core.closure import parse_closure
from toporder_sync.core.model import Closure, Territory
from toporder_sync.schemas import TicketLinesTable, quick
from toporder_sync.simulator import dumps, generate_series


def closures() -> dict[str, Closure]:
    samples = {name: parse_closure(sample_bytes(name), name) for name in (
        "valid-metropole.json", "valid-unknown-method.json", "invalid-unbalanced.json",
        "invalid-vat-rate.json")}
    series = generate_series(integration_id="tpo_q", establishment_id="E", establishment_name="Q",
                             start=date(2026, 3, 27), days=2)
    return {**samples, **{f"simulated-{n}": parse_closure(dumps(document), "s.json")
                          for n, document in enumerate(series)}}


CLOSURES = closures()


def tables(closure: Closure) -> tuple[validating.ClosureTable, ...]:
    return validating.closure_tables(closure, Territory.METROPOLE)


def pandera_passes(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> bool:
    try:
        schema.validate(frame.copy(), lazy=True)
    except (SchemaErrors, SchemaError):
        return False
    return True


def test_the_valid_closures_tables_pass_without_pandera_validating() -> None:
    for name, closure in CLOSURES.items():
        if name.startswith("invalid"):
            continue
        for table in tables(closure):
            assert quick.passes(table.schema, table.frame), (name, table.name)
            assert pandera_passes(table.schema, table.frame), (name, table.name)


def test_the_tables_pandera_refuses_are_not_passed() -> None:
    refused = {name: [t.name for t in tables(closure) if not pandera_passes(t.schema, t.frame)]
               for name, closure in CLOSURES.items()}
    assert {name: names for name, names in refused.items() if names} == {
        "invalid-unbalanced.json": ["totals"], "invalid-vat-rate.json": ["sales"]}
    for name, closure in CLOSURES.items():
        for table in tables(closure):
            if table.name in refused[name]:
                assert not quick.passes(table.schema, table.frame), (name, table.name)


@pytest.mark.parametrize("value", [Decimal("0.01"), Decimal("-0.01")])
def test_validate_closure_reports_what_pandera_finds(value: Decimal) -> None:
    closure = CLOSURES["valid-metropole.json"]
    broken = replace(closure, period_total=closure.period_total + value)
    findings = validating.validate_closure(broken, Territory.METROPOLE)
    assert [f.rule for f in findings] == ["grand_total_period"]


TABLES = [(f"{name}:{table.name}", table) for name, closure in CLOSURES.items()
          for table in tables(closure)]


def _set(frame: pd.DataFrame, column: str, row: int, value: Any) -> pd.DataFrame:
    """``frame`` with one cell changed; a column whose dtype cannot hold the value becomes
    one of object values (which pandera must then refuse or accept on its own)."""
    changed = frame.copy()
    try:
        changed.loc[changed.index[row], column] = value
    except (TypeError, ValueError, OverflowError, AssertionError):  # pandas' refusals
        values = changed[column].astype(object)
        values.iloc[row] = value
        changed[column] = values
    return changed


Mutation = Callable[[pd.DataFrame, str], pd.DataFrame]
SHAPES: dict[str, Mutation] = {
    "drop": lambda frame, column: frame.drop(columns=[column]),
    "extra": lambda frame, column: frame.assign(extra=0),
    "reorder": lambda frame, column: frame[[column, *(c for c in frame if c != column)]],
    "duplicate_row": lambda frame, column: pd.concat([frame, frame.iloc[[0]]],
                                                     ignore_index=True),
    "object": lambda frame, column: frame.astype({column: object}),
    "float": lambda frame, column: frame.assign(
        **{column: pd.to_numeric(frame[column], errors="coerce").astype("float64")}),
    "int32": lambda frame, column: frame.assign(
        **{column: pd.to_numeric(frame[column], errors="coerce").fillna(0).astype("int32")}),
    "nullable": lambda frame, column: frame.astype(
        {column: "Int64" if pd.api.types.is_integer_dtype(frame[column].dtype)
         else frame[column].dtype}),
}
VALUES = st.one_of(
    st.integers(min_value=-(2 ** 63), max_value=2 ** 63 - 1),
    st.sampled_from([0, 1, -1, 550, 1000, 2000]),
    st.sampled_from(["", "x", "sale", "refund", "gift_card", "tip", "10", "CB", "x" * 101]),
    st.booleans(), st.none(), st.just(pd.NA), st.floats(allow_nan=True),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_no_changed_table_passes_that_pandera_refuses(data: st.DataObject) -> None:
    label, table = data.draw(st.sampled_from(TABLES))
    frame = table.frame
    column = data.draw(st.sampled_from(list(frame.columns)))
    if data.draw(st.booleans()):
        changed = _set(frame, column, data.draw(st.integers(0, len(frame) - 1)),
                       data.draw(VALUES))
    else:
        changed = SHAPES[data.draw(st.sampled_from(sorted(SHAPES)))](frame, column)
    if quick.passes(table.schema, changed):
        assert pandera_passes(table.schema, changed), (label, column, changed)


def test_what_passes_does_not_read_is_left_to_pandera() -> None:
    frame = pd.DataFrame({"amount": np.array([1, 2], dtype=np.int64)})
    plain = pa.DataFrameSchema({"amount": pa.Column(int)}, strict=True)
    assert quick.passes(plain, frame)
    for schema in (plain.set_index(["amount"]), plain.update_column("amount", coerce=True),
                   pa.DataFrameSchema({"am.*": pa.Column(int, regex=True)}),
                   pa.DataFrameSchema({"amount": pa.Column(int)}, unique=["amount"]),
                   pa.DataFrameSchema({"amount": pa.Column(int)}, coerce=True),
                   pa.DataFrameSchema({"amount": pa.Column(int, default=0)})):
        assert not quick.passes(schema, frame), schema


def test_a_check_that_raises_is_not_a_pass() -> None:
    frame = pd.DataFrame({"amount": np.array([1, 2], dtype=np.int64)})
    schema = pa.DataFrameSchema({"amount": pa.Column(int, pa.Check(lambda s: 1 / 0))})
    assert not quick.passes(schema, frame) and not pandera_passes(schema, frame)


@pytest.mark.parametrize("ignore_na", [True, False])
def test_missing_values_are_ignored_as_pandera_ignores_them(ignore_na: bool) -> None:
    # ``ignore_na`` is pandera's own: ``Check.__call__`` applies it, here as in ``validate``.
    # A missing value fails both checks unless it is ignored.
    frame = pd.DataFrame({"amount": pd.array([1, None, 3], dtype="Int64")})
    column_check = pa.Check(lambda s: s.fillna(-1) > 0, ignore_na=ignore_na)
    frame_check = pa.Check(lambda df: df["amount"].fillna(-1) > 0, ignore_na=ignore_na)
    for schema in (
        pa.DataFrameSchema({"amount": pa.Column("Int64", column_check, nullable=True)}),
        pa.DataFrameSchema({"amount": pa.Column("Int64", nullable=True)}, checks=[frame_check]),
    ):
        assert quick.passes(schema, frame) is pandera_passes(schema, frame) is ignore_na


def test_the_public_pandera_api_it_reads_is_there() -> None:
    # On an upgrade that drops or renames one of these, this fails, not the closures' checks.
    schema = TicketLinesTable.to_schema()
    for attribute in quick.SCHEMA_ATTRIBUTES:
        assert hasattr(schema, attribute), attribute
    for column in schema.columns.values():
        assert isinstance(column, pa.Column)
        for attribute in quick.COLUMN_ATTRIBUTES:
            assert hasattr(column, attribute), attribute
        assert isinstance(column.dtype, dtypes.DataType)
        assert column.dtype.check(pandas_engine.Engine.dtype(column.dtype.type)) is True
        for check in column.checks:
            for attribute in quick.CHECK_ATTRIBUTES:
                assert hasattr(check, attribute), attribute
    frame = tables(CLOSURES["valid-metropole.json"])[0].frame
    for result in (pa.Check.gt(-1)(frame, "net"), pa.Check.gt(-1)(frame["net"]),
                   pa.Check(lambda df: df["net"] > -1)(frame)):
        assert bool(result.check_passed) is True
    assert callable(pandas_engine.Engine.register_dtype)
    assert issubclass(pandas_engine.STRING, dtypes.DataType)

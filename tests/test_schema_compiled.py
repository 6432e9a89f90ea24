"""The compiled check of a pandera schema never passes a frame that pandera refuses.

``schemas.compiled.passes`` answers "valid" for the closure's tables without pandera's
machinery; anything else goes to pandera, which reports. These tests hold it to that: on the
tables of real closures, valid and broken, and on every frame a set of generic mutations makes
of them (a value changed, a missing value, a duplicated row, a column dropped, added, retyped),
``passes`` is True only where pandera's ``validate`` passes, and it is True on the valid
closures, so that the fast path is the one taken. pandera's built-in checks that ``passes``
runs as plain comparisons (``isin``, ``str_length``, ``ge``) answer as pandera's on the
columns they read, and never pass where pandera refuses on any other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import date
from decimal import Decimal

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest
from pandera.errors import SchemaError, SchemaErrors
from samples import sample_bytes

from toporder_sync.core import validate as validating
from toporder_sync.core.closure import parse_closure
from toporder_sync.core.model import Closure, Territory
from toporder_sync.schemas.columns import Columns, array_of, to_numpy
from toporder_sync.schemas.compiled import passes
from toporder_sync.schemas.tables import Text
from toporder_sync.simulator import dumps, generate_series

Mutation = Callable[[pd.DataFrame, str], pd.DataFrame]


def closures() -> list[tuple[str, Closure]]:
    samples = [(name, parse_closure(sample_bytes(name), name)) for name in (
        "valid-metropole.json", "valid-unknown-method.json", "invalid-unbalanced.json",
        "invalid-vat-rate.json")]
    series = generate_series(integration_id="tpo_c", establishment_id="E", establishment_name="C",
                             start=date(2026, 3, 27), days=3)
    return [*samples, *((f"simulated-{n}", parse_closure(dumps(d), "s.json"))
                        for n, d in enumerate(series))]


CLOSURES = closures()


def tables(closure: Closure) -> list[validating._Table]:
    return [t for t in validating._tables(closure, Territory.METROPOLE) if len(t.columns)]


def pandera_passes(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> bool:
    try:
        schema.validate(frame.copy(), lazy=True)
    except (SchemaErrors, SchemaError):
        return False
    return True


def _bump(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    changed = frame.copy()
    series = changed[column]
    if series.dtype == bool or isinstance(series.dtype, pd.BooleanDtype):
        changed.loc[changed.index[0], column] = not bool(series.iloc[0])
    elif pd.api.types.is_integer_dtype(series.dtype):
        changed.loc[changed.index[0], column] = -1 if pd.isna(series.iloc[0]) else (
            series.iloc[0] + 1)
    else:
        changed.loc[changed.index[0], column] = "x" if series.iloc[0] != "x" else "y"
    return changed


def _negate(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    changed = frame.copy()
    if pd.api.types.is_integer_dtype(changed[column].dtype):
        changed[column] = -changed[column] - 1
    return changed


def _missing(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    changed = frame.copy()
    series = changed[column]
    if isinstance(series.dtype, np.dtype):
        series = series.astype("Int64" if series.dtype.kind == "i" else "boolean")
    series.iloc[-1] = pd.NA if not pd.api.types.is_string_dtype(series.dtype) else None
    changed[column] = series
    return changed


def _empty_text(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    changed = frame.copy()
    if pd.api.types.is_string_dtype(changed[column].dtype):
        changed[column] = changed[column].where(changed.index != changed.index[0], "")
    return changed


def _duplicate_row(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    return pd.concat([frame, frame.iloc[[0]]], ignore_index=True)


def _retype(dtype: object) -> Mutation:
    def mutation(frame: pd.DataFrame, column: str) -> pd.DataFrame:
        try:
            return frame.astype({column: dtype})
        except (TypeError, ValueError):
            return frame.assign(**{column: frame[column].astype(object)})
    return mutation


def _drop(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    return frame.drop(columns=[column])


def _extra(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    return frame.assign(extra=0)


def _reorder(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    return frame[[column, *(c for c in frame.columns if c != column)]]


MUTATIONS: dict[str, Mutation] = {
    "bump": _bump, "negate": _negate, "missing": _missing, "empty_text": _empty_text,
    "duplicate_row": _duplicate_row, "object": _retype(object), "float": _retype("float64"),
    "int32": _retype("int32"), "drop": _drop, "extra": _extra, "reorder": _reorder,
}


def mutated_tables() -> Iterator[tuple[str, pa.DataFrameSchema, pd.DataFrame]]:
    for name, closure in CLOSURES[:5]:  # the samples and a simulated day (with tickets)
        for table in tables(closure):
            for column in table.frame.columns:
                for label, mutate in MUTATIONS.items():
                    frame = mutate(table.frame, column)
                    yield f"{name}:{table.name}.{column}:{label}", table.schema, frame


def test_the_valid_closures_take_the_fast_path() -> None:
    for name, closure in CLOSURES:
        if not name.startswith(("valid", "simulated")):
            continue
        for table in tables(closure):
            assert pandera_passes(table.schema, table.frame), (name, table.name)
            assert passes(table.schema, table.frame), (name, table.name)
            assert passes(table.schema, table.columns), (name, table.name)


def test_a_broken_closure_is_refused_by_both() -> None:
    refused = {name: [t.name for t in tables(closure) if not pandera_passes(t.schema, t.frame)]
               for name, closure in CLOSURES if name.startswith("invalid")}
    assert refused == {"invalid-unbalanced.json": ["totals"],
                       "invalid-vat-rate.json": ["sales"]}
    for name, closure in CLOSURES:
        for table in tables(closure):
            if table.name in refused.get(name, []):
                assert not passes(table.schema, table.frame), (name, table.name)


def test_no_mutated_frame_passes_that_pandera_refuses() -> None:
    both = refused_by_both = 0
    for label, schema, frame in mutated_tables():
        fast = passes(schema, frame)
        slow = pandera_passes(schema, frame)
        assert not (fast and not slow), label
        both += fast and slow
        refused_by_both += not fast and not slow
    # the mutations break most frames and leave some valid: both answers are exercised
    assert both > 50 and refused_by_both > 500, (both, refused_by_both)


def columns_of(frame: pd.DataFrame) -> Columns:
    return Columns({name: frame[name].array for name in frame.columns})


def test_columns_get_the_answer_of_their_frame() -> None:
    answers = {True: 0, False: 0}
    for label, schema, frame in mutated_tables():
        # (pandas 3 reads an object column of strings as ``str``, in a Series as in a frame)
        columns = columns_of(frame)
        answer = passes(schema, columns)
        assert answer == passes(schema, columns.frame()), label
        assert not (answer and not pandera_passes(schema, columns.frame())), label
        answers[answer] += 1
    assert answers[True] > 50 and answers[False] > 500, answers


def test_the_tables_of_a_closure_are_columns_answered_as_their_one_frame() -> None:
    for name, closure in CLOSURES:
        for table in tables(closure):
            assert isinstance(table.columns, Columns)
            assert table.frame is table.columns.frame()  # made once
            assert list(table.frame.columns) == list(table.columns.columns), (name, table.name)
            assert passes(table.schema, table.columns) == passes(table.schema, table.frame)


def test_a_check_reading_more_of_a_frame_than_columns_have_is_left_to_pandera() -> None:
    arrays = {"amount": np.array([1, 2], dtype=np.int64)}
    schema = pa.DataFrameSchema({"amount": pa.Column(int)},
                                checks=[pa.Check(lambda df: df.sum(axis=1) > 0)])
    assert pandera_passes(schema, Columns(arrays).frame())
    assert passes(schema, pd.DataFrame(arrays))
    assert not passes(schema, Columns(arrays))


def test_columns_of_different_lengths_are_no_table() -> None:
    with pytest.raises(ValueError, match="different lengths"):
        Columns({"a": np.array([1]), "b": np.array([1, 2])})


def test_where_the_compiled_check_reads_nothing_pandera_decides() -> None:
    frame = pd.DataFrame({"amount": np.array([1, 2], dtype=np.int64)})
    unsupported = [
        pa.DataFrameSchema({"amount": pa.Column(int)}, index=pa.Index(int)),
        pa.DataFrameSchema({"amount": pa.Column(int, coerce=True)}),
        pa.DataFrameSchema({"amount": pa.Column(int)}, unique=["amount"]),
        pa.DataFrameSchema({"amount": pa.Column(int, pa.Check(lambda x: x > 0,
                                                               element_wise=True))}),
        pa.DataFrameSchema({"amount": pa.Column(int, required=False)}),
    ]
    for schema in unsupported:
        assert pandera_passes(schema, frame)
        assert not passes(schema, frame)
    assert passes(pa.DataFrameSchema({"amount": pa.Column(int, pa.Check.ge(0))}), frame)


def test_a_check_that_raises_or_answers_otherwise_is_not_a_pass() -> None:
    frame = pd.DataFrame({"amount": np.array([1, 2], dtype=np.int64)})

    def broken(series: pd.Series) -> pd.Series:
        raise ZeroDivisionError

    for check in (pa.Check(broken), pa.Check(lambda s: s.iloc[:1] > 0),
                  pa.Check(lambda s: pd.array([True, pd.NA], dtype="boolean")),
                  pa.Check(lambda s: s.astype("boolean").where(s < 2, pd.NA))):
        schema = pa.DataFrameSchema({"amount": pa.Column(int, check)})
        assert not passes(schema, frame), check


@pytest.mark.parametrize("value", [Decimal("0.01"), Decimal("-0.01")])
def test_validate_closure_reports_what_pandera_finds(value: Decimal) -> None:
    # the whole path: a broken total goes to pandera and its finding is reported
    closure = CLOSURES[0][1]
    broken = replace(closure, period_total=closure.period_total + value)
    findings = validating.validate_closure(broken, Territory.METROPOLE)
    assert [f.rule for f in findings] == ["grand_total_period"]


def _shortcut_series() -> dict[str, pd.Series]:
    texts = ["sale", "refund", "", "é", "日本語", "x" * 101, "tip"]
    return {
        "texts": pd.Series(pd.array(texts, dtype="str")),
        "texts-missing": pd.Series(pd.array(["sale", None, "refund"], dtype="str")),
        "texts-empty": pd.Series(pd.array([], dtype="str")),
        "texts-short": pd.Series(pd.array(["ab", "abc"], dtype="str")),
        "texts-sales": pd.Series(pd.array(["sale", "sale", "refund"], dtype="str")),
        "ints": pd.Series(np.array([0, 3, -1], dtype=np.int64)),
        "ints-positive": pd.Series(np.array([0, 3, 7], dtype=np.int64)),
        "ints-empty": pd.Series(np.array([], dtype=np.int64)),
        "uint8": pd.Series(np.array([0, 200], dtype=np.uint8)),
        "int32": pd.Series(np.array([2, 5], dtype=np.int32)),
        "Int64-missing": pd.Series(pd.array([2, None, 5], dtype="Int64")),
        "floats": pd.Series(np.array([0.5, 2.0, np.nan])),
        "objects": pd.Series(["sale", 1, None], dtype=object),
    }


_SHORTCUT_CHECKS = [
    pa.Check.isin(["sale", "refund"]), pa.Check.isin(frozenset({"sale", "", "tip"})),
    pa.Check.isin(["sale", 1]), pa.Check.isin("sale"), pa.Check.isin([0, 3, -1]),
    pa.Check.isin(["sale", "refund"], ignore_na=False),
    pa.Check.str_length(1, 100), pa.Check.str_length(min_value=1),
    pa.Check.str_length(max_value=3), pa.Check.str_length(exact_value=3),
    pa.Check.str_length(min_value=2, ignore_na=False), pa.Check.str_length(2.5, 4),
    pa.Check.ge(0), pa.Check.ge(3), pa.Check.ge(0.5), pa.Check.ge(-1, ignore_na=False),
]


def test_builtin_checks_answer_as_pandera_on_any_column() -> None:
    # ``passes`` runs isin, str_length and ge as plain comparisons on str and integer columns
    answered = 0
    for label, series in _shortcut_series().items():
        dtype = Text if isinstance(series.dtype, pd.StringDtype) else series.dtype
        for check in _SHORTCUT_CHECKS:
            schema = pa.DataFrameSchema({"c": pa.Column(dtype, check, nullable=True)})
            frame = pd.DataFrame({"c": series})
            fast, slow = passes(schema, frame), pandera_passes(schema, frame)
            assert slow or not fast, (label, check)
            if label.startswith(("texts", "ints", "uint8")):  # where the shortcuts answer
                assert fast == slow, (label, check)
            answered += fast
    assert answered > 20, answered


def _reader_arrays() -> dict[str, object]:
    return {
        "int64": np.array([3, -1, 0], dtype=np.int64),
        "float": np.array([0.5, np.nan, 2.0]),
        "bool": np.array([True, False, True]),
        "Int64": pd.array([2, None, 5], dtype="Int64"),
        "boolean": pd.array([True, None, False], dtype="boolean"),
        "str": pd.array(["a", None, "b"], dtype="str"),
        "objects": np.array(["a", "b", "c"], dtype=object),
        "wrapped": pd.arrays.NumpyExtensionArray(np.array([1, 2, 3], dtype=np.int64)),
    }


def test_columns_read_each_column_as_its_series_would() -> None:
    arrays = _reader_arrays()
    columns = Columns(arrays)
    frame = columns.frame()
    for name in arrays:
        series = pd.Series(arrays[name])
        assert columns[name].dtype == series.dtype, name
        for table in (columns, frame):
            array = array_of(table, name)
            assert array.dtype == series.dtype, name
            # (equals: missing values in the same places are equal)
            read, expected = array.tolist(), series.tolist()
            assert [type(v) for v in read] == [type(v) for v in expected], name
            assert pd.Series(read, dtype=object).equals(pd.Series(expected, dtype=object)), name
            values, expected_values = to_numpy(array), series.to_numpy()
            assert values.dtype == expected_values.dtype, name
            assert pd.Series(values).equals(pd.Series(expected_values)), name
    assert to_numpy(array_of(columns, "int64"), dtype=bool).tolist() == [True, True, False]
    with pytest.raises(ValueError):
        to_numpy(array_of(columns, "boolean"), dtype=bool)  # a missing value is no flag


def test_a_check_answers_one_flag_for_each_row_of_its_columns() -> None:
    columns = Columns({"amount": np.array([1, 2], dtype=np.int64)})
    assert columns.per_row([True, True]).all()
    assert not columns.per_row(np.array([True, False])).all()
    with pytest.raises(ValueError, match="rows"):
        columns.per_row([True])
    schema = pa.DataFrameSchema({"amount": pa.Column(int)}, checks=[
        pa.Check(lambda df: Columns({"other": np.array([1])}).per_row([True]))])
    assert not passes(schema, columns)  # flags of another table's rows are no answer

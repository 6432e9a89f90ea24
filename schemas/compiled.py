"""A yes/no check of a frame against a pandera schema, compiled from the schema itself.

pandera spends ~0.4 ms on each column and ~0.2 ms on each check of a validation, whatever the
number of rows, in its general machinery (configuration copies, scopes, result objects, error
collection), while the comparisons themselves take microseconds. A closure has nine tables, so
that machinery was most of the cost of a valid day. ``passes`` reads the same schema, column by
column and check by check, and runs the same check functions on the frame, with none of that
machinery. It only answers "valid": any other answer goes to pandera's ``validate``, whose
failure cases are the ones reported, just as the compiled JSON Schema check answers for
``jsonschema`` when a closure is read (``core.closure``).

It may be stricter than pandera, never looser:

* whatever the schema uses that is not read here (an index, coercion, parsers, grouped or
  element-wise checks, optional or regex columns, a frame-wide dtype or uniqueness, ...) makes
  it answer "not valid" for every frame, so pandera validates;
* a check's result must be all ``True`` with no missing value (pandera skips missing values of
  a result, and may pass where this answers no); a frame check's result is not relieved of the
  rows that are all missing values (pandera's ``ignore_na`` on a frame check);
* a check function that raises, a result of another shape, a column missing, extra, repeated or
  out of place: "not valid".

Semantics kept from pandera (0.35): the dtype is the column's ``dtype.check`` on the engine's
reading of the series' dtype (a result other than ``True`` is "not valid"); a non-nullable
column holds no missing value; a unique column no duplicate; a column check with ``ignore_na``
(the default) sees the series without its missing values.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.config import CONFIG
from pandera.engines.pandas_engine import Engine

Rule = Callable[[pd.DataFrame], bool]

_plans: dict[int, tuple[pa.DataFrameSchema, Rule]] = {}


def passes(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> bool:
    """True only if ``schema.validate(frame)`` would pass; False means "ask pandera"."""
    known = _plans.get(id(schema))
    if known is None or known[0] is not schema:
        # pandera registers its built-in checks' pandas functions when it first validates
        schema.register_default_backends(type(frame))
        known = _plans[id(schema)] = (schema, _plan(schema))
    try:
        return known[1](frame)
    except Exception:  # a check that raises fails in pandera too, reported there
        return False


def _never(frame: pd.DataFrame) -> bool:
    return False


def _plan(schema: pa.DataFrameSchema) -> Rule:
    """The schema as one function, or ``_never`` when it uses what is not read here."""
    if CONFIG.use_narwhals_backend or not _supported(schema):
        return _never
    names = list(schema.columns)
    columns = [_column_rule(schema.columns[name]) for name in names]
    frame_checks = [_check_rule(check) for check in schema.checks]
    if any(rule is None for rule in (*columns, *frame_checks)):
        return _never
    column_rules: list[Callable[[pd.Series], bool]] = [r for r in columns if r is not None]
    table_rules: list[Callable[[Any], bool]] = [r for r in frame_checks if r is not None]
    expected = set(names) if schema.strict else None

    def rule(frame: pd.DataFrame) -> bool:
        present = list(frame.columns)
        if len(set(present)) != len(present):
            return False
        if expected is not None and set(present) != expected:
            return False
        for name, column_rule in zip(names, column_rules, strict=True):
            if name not in frame or not column_rule(frame[name]):
                return False
        return all(check(frame) for check in table_rules)

    return rule


def _supported(schema: pa.DataFrameSchema) -> bool:
    return (schema.index is None and not schema.coerce and schema.dtype is None
            and not schema.unique and not schema.ordered and not schema.add_missing_columns
            and not schema.drop_invalid_rows and schema.strict != "filter"
            and not getattr(schema, "parsers", None))


def _column_rule(column: Any) -> Callable[[pd.Series], bool] | None:
    if (column.coerce or not column.required or column.regex or column.default is not None
            or column.drop_invalid_rows or getattr(column, "parsers", None)
            or column.dtype is None):
        return None
    checks = [_check_rule(check) for check in column.checks]
    if any(check is None for check in checks):
        return None
    series_checks: list[Callable[[Any], bool]] = [c for c in checks if c is not None]
    dtype, nullable, unique = column.dtype, column.nullable, column.unique

    def rule(series: pd.Series) -> bool:
        if dtype.check(Engine.dtype(series.dtype), series) is not True:
            return False
        if not nullable and not _no_missing_values(series):
            return False
        if unique and not series.is_unique:
            return False
        return all(check(series) for check in series_checks)

    return rule


def _no_missing_values(series: pd.Series) -> bool:
    """A numpy integer or boolean column cannot hold one; other columns are looked at."""
    return (isinstance(series.dtype, np.dtype) and series.dtype.kind in "iub") or not series.hasnans


def _check_rule(check: pa.Check) -> Callable[[Any], bool] | None:
    """A check as a function of its series or frame, True when every row passes."""
    if check.groupby is not None or check.element_wise or check._check_fn is None:
        return None
    function = check._check_fn
    builtin = getattr(function, "__name__", None)
    if builtin is not None and check.is_builtin_check(builtin):  # as ``Check.__call__`` does
        function = check.get_builtin_check_fn(builtin)
    function = partial(function, **check._check_kwargs)
    ignore_na = check.ignore_na

    def rule(data: Any) -> bool:
        if ignore_na and isinstance(data, pd.Series) and data.hasnans:
            data = data.dropna()
        return _all_true(function(data), data)

    return rule


def _all_true(result: Any, data: Any) -> bool:
    if isinstance(result, bool | np.bool_):
        return bool(result)
    if isinstance(result, pd.Series):
        if len(result) != len(data) or not result.index.equals(data.index):
            return False
        if result.dtype == bool:
            return bool(result.all())
        if isinstance(result.dtype, pd.BooleanDtype):
            return not result.hasnans and bool(result.all())
    return False

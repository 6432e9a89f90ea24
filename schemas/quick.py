"""Whether a frame passes a pandera schema, answered "yes" only when pandera would agree.

Why: validating a closure's nine small tables with pandera's ``validate(..., lazy=True)``
costs several times what running the same rules costs (pandera's price is per column and per
check, in machinery around the comparisons, not per row), and a catch-up validates every
closure of every client. ``passes`` reads the schema through pandera's public API and runs the
schema's own ``Check`` objects (``Check.__call__``, whose ``CheckResult.check_passed`` keeps
pandera's semantics: ``ignore_na``, element-wise and grouped checks, the reading of a check's
output); a table it passes is valid, any other goes to ``validate(..., lazy=True)``, whose
failure cases are the ones reported. Cost: a valid closure's tables are answered in about a
third of the CPU time of pandera's ``validate`` on them (``bench/core.py`` measures both).

It may be stricter than pandera, never looser. It answers False, leaving pandera to decide,

* for whatever of a schema it does not read: an index, a frame-wide dtype, coercion, parsers,
  uniqueness across columns, added missing columns, default values, dropped invalid rows,
  regex columns;
* for a frame whose columns are not exactly the schema's, in the schema's order;
* for a column dtype check answering anything but ``True``, a missing value in a non-nullable
  column, a duplicate in a unique one, a check that fails or raises.

The public API it relies on is listed in ``SCHEMA_ATTRIBUTES``, ``COLUMN_ATTRIBUTES`` and
``CHECK_ATTRIBUTES``, which a test asserts on the installed pandera, so that an upgrade that
removes one fails there.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.engines import pandas_engine

# What ``passes`` reads of a schema and of its columns (public attributes, documented as the
# constructors' arguments).
SCHEMA_ATTRIBUTES = ("columns", "checks", "index", "dtype", "coerce", "unique", "parsers",
                     "add_missing_columns", "drop_invalid_rows")
COLUMN_ATTRIBUTES = ("dtype", "nullable", "unique", "checks", "regex", "coerce", "parsers",
                     "default", "drop_invalid_rows")
CHECK_ATTRIBUTES = ("groupby",)


def _reads_all_of(schema: pa.DataFrameSchema) -> bool:
    """Whether ``passes`` reads everything of ``schema`` that decides a validation."""
    if (schema.index is not None or schema.dtype is not None or schema.coerce or schema.unique
            or schema.parsers or schema.add_missing_columns or schema.drop_invalid_rows):
        return False
    return not any(column.regex or column.coerce or column.parsers or column.default is not None
                   or column.drop_invalid_rows for column in schema.columns.values())


def _dtype_passes(column: pa.Column, series: pd.Series) -> bool:
    if column.dtype is None:
        return True
    answer: Any = column.dtype.check(pandas_engine.Engine.dtype(series.dtype), series)
    return isinstance(answer, bool | np.bool_) and bool(answer)


def _column_check_passes(check: pa.Check, frame: pd.DataFrame, name: str,
                         series: pd.Series) -> bool:
    """A column check's result, as ``validate`` runs it: on ``frame``'s column ``name``. An
    ungrouped check reads only that column, so it is given the series already read."""
    result = check(series) if check.groupby is None else check(frame, name)
    return bool(result.check_passed)


def _may_hold_missing(series: pd.Series) -> bool:
    """False for a numpy integer or boolean column, which cannot hold a missing value."""
    return not (isinstance(series.dtype, np.dtype) and series.dtype.kind in "iub")


def passes(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> bool:
    """True only if ``schema.validate(frame, lazy=True)`` passes (False: ask pandera)."""
    if not _reads_all_of(schema) or list(frame.columns) != list(schema.columns):
        return False
    try:
        # the frame's columns are the schema's, in its order (checked above)
        for (name, column), (_, series) in zip(schema.columns.items(), frame.items(),
                                               strict=True):
            if not _dtype_passes(column, series):
                return False
            if not column.nullable and _may_hold_missing(series) and series.hasnans:
                return False
            if column.unique and series.duplicated().any():
                return False
            if not all(_column_check_passes(check, frame, name, series)
                       for check in column.checks):
                return False
        return all(check(frame).check_passed for check in schema.checks)
    except Exception:  # a check that raises is a failure to pandera too: it reports it
        return False

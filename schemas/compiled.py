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

A table may be given as ``Columns`` (``schemas.columns``) rather than as a ``DataFrame``: its
columns' arrays, which the column rules read as the frame's series hold them, and which a
check reads as it reads a frame (``[]``, ``index``, the names of ``columns``) or through
``schemas.columns.array_of``, as ``schemas.tables``' checks do. A frame made of the same
arrays holds the same values, dtypes and index (``Columns.frame``, for pandera when the answer
is no). A check that reads anything else of a frame raises on ``Columns``: "not valid", and
pandera validates the frame. A check answering ``Columns.per_row`` passes when each of the
rows' flags is ``True``.

Cost: pandas spends tens of microseconds on each operation whatever the number of rows, so the
per-column work is cut where the answer is known without it: given ``Columns``, no
``DataFrame`` is built (~60–100 µs) nor a ``Series`` (~8–10 µs each, ~50 for a closure's
tables) for a table that passes, but for a column whose own check reads one
(``refund_positive``, say); a dtype check that reads the dtype alone is answered once per dtype
of the column; a numpy integer or boolean column is not looked at for missing values (it cannot
hold one); a unique integer or ``str`` column is a set of its Python values; and pandera's
built-in ``isin``, ``str_length`` and ``greater_than_or_equal_to`` run as the same comparisons
on the Python values of a ``str`` column (``isin`` of an integer one too) or the numpy values
of an integer one (any other column or argument: pandera's own).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandas.arrays import StringArray
from pandera import dtypes
from pandera.config import CONFIG
from pandera.engines import pandas_engine
from pandera.engines.pandas_engine import Engine

from toporder_sync.schemas.columns import Columns, RowsPassed, array_of
from toporder_sync.schemas.tables import Text

Table = pd.DataFrame | Columns
Rule = Callable[[Table], bool]
# A column's rule, given its table and name: it reads the column's array (``array_of``), and its
# series only where a check reads one.
ColumnRule = Callable[[Table, str], bool]
# A column check's rule: the column's array, and its series made only if the check reads one.
CheckRule = Callable[[Any, Callable[[], pd.Series]], bool]

_plans: dict[int, tuple[pa.DataFrameSchema, Rule]] = {}

# ``DataType.check`` methods whose answer depends on the dtype alone, never on the values
# (each compares dtypes and ignores its ``data_container``): pandera's base checks, its integer
# check, and ``Text``'s.
_DTYPE_ONLY_CHECKS = frozenset({dtypes.DataType.check, dtypes.Int.check,
                                pandas_engine.DataType.check, Text.check})


def passes(schema: pa.DataFrameSchema, frame: Table) -> bool:
    """True only if ``schema.validate(frame)`` would pass (of ``frame.frame()`` for
    ``Columns``); False means "ask pandera"."""
    known = _plans.get(id(schema))
    if known is None or known[0] is not schema:
        # pandera registers its built-in checks' pandas functions when it first validates
        schema.register_default_backends(pd.DataFrame)
        known = _plans[id(schema)] = (schema, _plan(schema))
    try:
        return known[1](frame)
    except Exception:  # a check that raises fails in pandera too, reported there
        return False


def _never(frame: Table) -> bool:
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
    column_rules: list[ColumnRule] = [r for r in columns if r is not None]
    table_rules: list[Callable[[Any], bool]] = [r for r in frame_checks if r is not None]
    expected = set(names) if schema.strict else None

    def rule(frame: Table) -> bool:
        present = list(frame.columns)
        if len(set(present)) != len(present):
            return False
        if expected is not None and set(present) != expected:
            return False
        for name, column_rule in zip(names, column_rules, strict=True):
            if name not in frame or not column_rule(frame, name):
                return False
        return all(check(frame) for check in table_rules)

    return rule


def _supported(schema: pa.DataFrameSchema) -> bool:
    return (schema.index is None and not schema.coerce and schema.dtype is None
            and not schema.unique and not schema.ordered and not schema.add_missing_columns
            and not schema.drop_invalid_rows and schema.strict != "filter"
            and not getattr(schema, "parsers", None))


def _column_rule(column: Any) -> ColumnRule | None:
    if (column.coerce or not column.required or column.regex or column.default is not None
            or column.drop_invalid_rows or getattr(column, "parsers", None)
            or column.dtype is None):
        return None
    checks = [_series_check_rule(check) for check in column.checks]
    if any(check is None for check in checks):
        return None
    series_checks: list[CheckRule] = [c for c in checks if c is not None]
    dtype, nullable, unique = column.dtype, column.nullable, column.unique
    dtype_only = type(dtype).check in _DTYPE_ONLY_CHECKS
    passed_dtypes: set[Any] = set()  # series dtypes this column's dtype check has passed

    def rule(table: Table, name: str) -> bool:
        array = array_of(table, name)

        def series() -> pd.Series:  # made once by ``Columns``, looked up in a frame
            return table[name]

        if array.dtype not in passed_dtypes:
            if dtype.check(Engine.dtype(array.dtype), series()) is not True:
                return False
            if dtype_only:
                passed_dtypes.add(array.dtype)
        if not nullable and _has_missing_values(array):
            return False
        if unique and not _is_unique(array, series):
            return False
        return all(check(array, series) for check in series_checks)

    return rule


def _has_missing_values(array: Any) -> bool:
    """A numpy integer or boolean array cannot hold one; other arrays are looked at."""
    if isinstance(array, np.ndarray):
        return array.dtype.kind not in "iub" and bool(pd.isna(array).any())
    return bool(array.isna().any())


def _is_unique(array: Any, series: Callable[[], pd.Series]) -> bool:
    """``Series.is_unique`` (a missing value counts once), as a set of the Python values of
    an integer array or of a ``str`` array without missing values."""
    values = _texts(array)
    if values is None:
        values = _integers(array)
    if values is None:
        return bool(series().is_unique)
    return len(set(values.tolist())) == len(values)


def _unsupported(check: pa.Check) -> bool:
    return check.groupby is not None or check.element_wise or check._check_fn is None


def _check_rule(check: pa.Check) -> Callable[[Any], bool] | None:
    """A frame check as a function of its frame, True when every row passes."""
    if _unsupported(check):
        return None
    function = partial(check._check_fn, **check._check_kwargs)

    def rule(frame: Any) -> bool:
        return _all_true(function(frame), frame)

    return rule


def _series_check_rule(check: pa.Check) -> CheckRule | None:
    """A column's check as a function of its array (and its series, made only if needed),
    True when every value passes."""
    if _unsupported(check):
        return None
    function = check._check_fn
    builtin = getattr(function, "__name__", None)
    fast: Callable[..., bool | None] = _no_shortcut
    if builtin is not None and check.is_builtin_check(builtin):  # as ``Check.__call__`` does
        function = check.get_builtin_check_fn(builtin)
        fast = _SHORTCUTS.get(builtin, _no_shortcut)
    kwargs = check._check_kwargs
    function = partial(function, **kwargs)
    shortcut = partial(fast, **kwargs)
    ignore_na = check.ignore_na

    def rule(array: Any, series: Callable[[], pd.Series]) -> bool:
        if ignore_na and _has_missing_values(array):
            data = series().dropna()
        else:
            answer = shortcut(array)
            if answer is not None:
                return answer
            data = series()
        return _all_true(function(data), data)

    return rule


def _no_shortcut(array: Any, **kwargs: Any) -> bool | None:
    return None


def _texts(array: Any) -> np.ndarray[Any, Any] | None:
    """The strings of a ``str`` array holding no missing value (None for any other)."""
    if type(array) is not StringArray or array.isna().any():
        return None
    texts: np.ndarray[Any, Any] = array.to_numpy()
    return texts


def _integers(array: Any) -> np.ndarray[Any, Any] | None:
    """A numpy integer array (None for any other)."""
    return array if isinstance(array, np.ndarray) and array.dtype.kind in "iu" else None


def _isin(array: Any, allowed_values: Any) -> bool | None:
    if not isinstance(allowed_values, frozenset | set | list | tuple):
        return None
    texts = _texts(array)
    if texts is not None:
        plain = all(type(value) is str for value in allowed_values)
        return frozenset(allowed_values).issuperset(texts) if plain else None
    values = _integers(array)
    if values is None or any(type(value) is not int for value in allowed_values):
        return None
    return frozenset(allowed_values).issuperset(values.tolist())


def _str_length(array: Any, min_value: int | None = None, max_value: int | None = None,
                exact_value: int | None = None) -> bool | None:
    texts = _texts(array)
    bounds = (min_value, max_value, exact_value)
    if texts is None or any(b is not None and type(b) is not int for b in bounds) or (
            min_value is None and max_value is None and exact_value is None):
        return None
    lengths = set(map(len, texts))
    if not lengths:
        return True
    if exact_value is not None:
        return lengths == {exact_value}
    return ((min_value is None or min(lengths) >= min_value)
            and (max_value is None or max(lengths) <= max_value))


def _greater_than_or_equal_to(array: Any, min_value: Any) -> bool | None:
    values = _integers(array)
    if values is None or type(min_value) is not int:
        return None
    return bool((values >= min_value).all())


# pandera's built-in checks by name, as the same comparisons on Python or numpy values; each
# answers None where its column or arguments are not the plain ones it knows, and pandera's
# function then runs.
_SHORTCUTS: dict[str, Callable[..., bool | None]] = {
    "isin": _isin,
    "str_length": _str_length,
    "greater_than_or_equal_to": _greater_than_or_equal_to,
}


def _all_true(result: Any, data: Any) -> bool:
    if isinstance(result, bool | np.bool_):
        return bool(result)
    if isinstance(result, RowsPassed):  # ``Columns.per_row``: one flag for each of its rows
        return type(data) is Columns and len(result.flags) == len(data) and result.all()
    if isinstance(result, pd.Series):
        if len(result) != len(data) or not result.index.equals(data.index):
            return False
        if result.dtype == bool:
            return bool(result.all())
        if isinstance(result.dtype, pd.BooleanDtype):
            return not result.hasnans and bool(result.all())
    return False

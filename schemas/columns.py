"""A table given as its columns' arrays, read as a ``DataFrame`` is, without making one.

pandas spends tens of microseconds making a ``DataFrame`` or a ``Series``, whatever the number
of rows, and a closure has nine small tables checked with ~50 series between them. ``Columns``
holds the arrays; ``schemas.compiled``'s rules and the checks of ``schemas.tables`` read a
column's values through ``array_of`` (its array, for a ``Columns`` or a frame alike) and answer
one flag per row through ``Columns.per_row``. A ``Series`` is made only for a check that asks
for one (``columns[name]``), the ``DataFrame`` only for pandera (``frame``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.extensions import ExtensionArray
from pandas.arrays import NumpyExtensionArray


def values_of(series: pd.Series) -> Any:
    """The values a series holds: its numpy array, or its extension array."""
    return series.to_numpy() if isinstance(series.dtype, np.dtype) else series.array


def array_of(table: pd.DataFrame | Columns, name: str) -> Any:
    """``values_of(table[name])``; for ``Columns``, without making the ``Series``."""
    return table.array(name) if isinstance(table, Columns) else values_of(table[name])


def to_numpy(array: Any, dtype: Any = None) -> np.ndarray[Any, Any]:
    """What ``Series.to_numpy(dtype)`` answers for a series holding ``array``
    (``values_of``)."""
    if isinstance(array, np.ndarray):
        return np.asarray(array, dtype=dtype)
    values: np.ndarray[Any, Any] = array.to_numpy(dtype=dtype)
    return values


class Columns:
    """A table's columns, read as a frame's are (``columns[name]``, ``index``, ``columns``),
    each ``Series`` made once, when first read.

    ``arrays``: one array per column (numpy or pandas extension arrays), all of one length;
    they are kept, not copied, and must not be changed afterwards. ``columns`` is the tuple of
    their names (a ``pd.Index`` costs ~15 µs to make, for each of a closure's nine tables).
    """

    __slots__ = ("_arrays", "_frame", "_series", "columns", "index")

    def __init__(self, arrays: Mapping[str, Any]) -> None:
        lengths = {len(array) for array in arrays.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns of different lengths: {sorted(lengths)}")
        self._arrays = dict(arrays)
        self._series: dict[str, pd.Series] = {}
        self._frame: pd.DataFrame | None = None
        self.columns = tuple(self._arrays)
        self.index = pd.RangeIndex(lengths.pop() if lengths else 0)

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, name: object) -> bool:
        return name in self._arrays

    def __getitem__(self, name: str) -> pd.Series:
        series = self._series.get(name)
        if series is None:
            series = self._series[name] = pd.Series(self._arrays[name], index=self.index,
                                                    name=name, copy=False)
        return series

    def array(self, name: str) -> Any:
        """``values_of(columns[name])``, without making the ``Series`` where that is the array
        given: a numpy array of numbers or flags, or an extension array (pandas may read other
        arrays otherwise: objects that are all strings as ``str``)."""
        array = self._arrays[name]
        if (array.dtype.kind in "iufb" if isinstance(array, np.ndarray)
                else isinstance(array, ExtensionArray) and type(array) is not NumpyExtensionArray):
            return array
        return values_of(self[name])

    def per_row(self, passed: Any) -> RowsPassed:
        """A check's answer, one flag per row, as ``pd.Series(passed, index=index)`` is for a
        frame (a value that is no flag, or a count that is not the rows', raises)."""
        flags = np.asarray(passed, dtype=bool)
        if flags.shape != (len(self),):
            raise ValueError(f"{flags.shape} flags for {len(self)} rows")
        return RowsPassed(flags)

    def frame(self) -> pd.DataFrame:
        """The same table as a ``DataFrame`` (made once), for pandera."""
        if self._frame is None:
            self._frame = pd.DataFrame(self._arrays, index=self.index, copy=False)
        return self._frame


class RowsPassed:
    """A check's answer for each row of a ``Columns`` table (``Columns.per_row``)."""

    __slots__ = ("flags",)

    def __init__(self, flags: np.ndarray[Any, np.dtype[np.bool_]]) -> None:
        self.flags = flags

    def all(self) -> bool:
        return bool(self.flags.all())

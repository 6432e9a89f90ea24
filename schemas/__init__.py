"""pandera models of the closure's tables (installed as ``toporder_sync.schemas``).

One ``DataFrameModel`` per table, ``strict = True``, no coercion: money columns hold ``int64``
cents and a float in one of them is a failure, not something to convert. Cross-column
identities of ``closure-v1.md`` are ``@pa.dataframe_check``s whose names are the rule names
reported to the POS (see ``toporder_sync.core.validate``).

Importing this package also answers pandera's geopandas probe at once (below), wherever
pandera validates in the process.
"""

import importlib.util
import sys

# pandera (0.35) resolves every column's dtype through ``pandas_engine.is_geopandas_dtype``,
# which runs ``from geopandas.array import GeometryDtype`` each time. Without geopandas
# installed, each of those imports fails only after searching every entry of sys.path again:
# about half the cost of validating a table of a few columns. A ``None`` in ``sys.modules``
# is Python's documented way to say "this module cannot be imported": the same ImportError,
# raised at once. Only done when geopandas is indeed missing, so it never hides it.
if "geopandas" not in sys.modules and importlib.util.find_spec("geopandas") is None:
    sys.modules["geopandas"] = None  # type: ignore[assignment]

from toporder_sync.schemas.tables import (
    PaymentsTable,
    ReconciliationTable,
    RefundsTable,
    SalesTable,
    TicketLinesTable,
    TicketPaymentsTable,
    TicketsTable,
    TipsTable,
    TotalsTable,
    sales_schema,
)

__all__ = [
    "PaymentsTable",
    "ReconciliationTable",
    "RefundsTable",
    "SalesTable",
    "TicketLinesTable",
    "TicketPaymentsTable",
    "TicketsTable",
    "TipsTable",
    "TotalsTable",
    "sales_schema",
]

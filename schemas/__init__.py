"""pandera models of the closure's tables (installed as ``toporder_sync.schemas``).

One ``DataFrameModel`` per table, ``strict = True``, no coercion: money columns hold ``int64``
cents and a float in one of them is a failure, not something to convert. Cross-column
identities of ``closure-v1.md`` are ``@pa.dataframe_check``s whose names are the rule names
reported to the POS (see ``toporder_sync.core.validate``).
"""

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

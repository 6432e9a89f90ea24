"""The SQL ledger, on SQLite or PostgreSQL.

``db`` connects, migrates and runs transactions; ``tables`` describes the schema. The other
modules read and write it, by concern, inside the caller's transaction (nothing there
commits): ``clients`` (who, when, which accounts), ``inbox`` (the closures received),
``journal`` (posting entries and reading them back), ``days`` (each client-day's state, alert
and the methods seen), ``claims`` (which run holds a day), ``connections`` and ``webhooks``
(how a client's closures arrive). Callers get frozen dataclasses, never ORM rows; time is
always passed in (``now``).

The statements a client-day runs are built once, with bound parameters, and only executed per
call: building one (an ON CONFLICT's ``excluded`` alone copies the table) is work that would
otherwise be redone on every call for the same result. Those that differ by database are built
once per dialect (``db.for_dialect``). Parameters are never named after a column of the table
written: SQLAlchemy reserves those names for the VALUES or SET clause.
"""

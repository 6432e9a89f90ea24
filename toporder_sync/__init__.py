"""toporder-sync: Toporder daily closures (ticket Z) posted as balanced sales-journal entries.

Layout: ``toporder_sync.core`` is the pure accounting core (no Prefect, no SQLAlchemy);
``toporder_sync.ledger`` is the SQL ledger; ``toporder_sync.schemas`` (``schemas/``) holds
the pandera models; ``toporder_sync.tasks`` and ``toporder_sync.flows`` (``tasks/``,
``flows/``) are the thin Prefect layer; ``toporder_sync.cli`` is the command line.
"""

__version__ = "0.1.0"

"""Prefect tasks of a client-day (installed as ``toporder_sync.tasks``): thin wrappers.

Each task takes arguments, calls the core or the ledger service, and returns. Retries,
timeouts and names live in the decorators; only ``TransientError`` is ever retried.
"""

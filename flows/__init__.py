"""Prefect flows (installed as ``toporder_sync.flows``): the story of a client-day, no rules."""

"""Onboarding a fleet of clients from one CSV file (``toporder-sync clients import``).

Two stages, as ``clients import`` runs them:

* ``clients_csv``: pure. Reads the bytes of the file into one ``ClientSpec`` per row, or the
  ``Problem`` of each bad row (line, column, rule broken); no database, no clock.
* ``registry``: the ledger side, in the caller's transaction. Reads the clients of the file
  once, decides for each row (create, update, unchanged, or refused, e.g. an activation date
  moved under posted entries) and writes every change in bulk; nothing is written unless the
  whole file passes.

The format, the rules and the figures are in ``docs/onboarding.md``.
"""

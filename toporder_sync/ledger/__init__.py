"""The SQL ledger, on SQLite or PostgreSQL.

``db`` connects, migrates and runs transactions; ``tables`` describes the schema;
``repository`` reads and writes it inside the caller's transaction.
"""

"""Talking to Toporder: each client's source and secrets, and the outbox.

* ``clients.source``: where the client's closures come from, ``push`` (Toporder posts them to
  the receiver, or they are handed to ``receive``) or ``pull`` (fetched from Toporder's API).
* ``clients.push_secret``: the key Toporder signs pushed closures with (HMAC-SHA256).
* ``clients.webhook_url`` / ``webhook_secret``: where and with which key the client's error
  notifications are sent (Standard Webhooks signatures). Secrets are stored so that they can be
  used (HMAC needs the key itself); they never leave the database in logs, parameters or
  artifacts.
* ``outbox``: messages to deliver (``topic``: an error notification to Toporder, an entry to
  push to Pennylane), written in the same transaction as the ledger change they announce and
  delivered later by a relay, at least once; ``event_id`` lets the receiving side drop
  duplicates. ``status`` is ``pending`` until delivered (``sent``) or given up after a bounded
  number of attempts (``dead``, redelivered only by hand).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INSTANT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("clients", sa.Column("source", sa.String(8), server_default="push",
                                       nullable=False))
    op.add_column("clients", sa.Column("push_secret", sa.Text(), nullable=True))
    op.add_column("clients", sa.Column("webhook_url", sa.Text(), nullable=True))
    op.add_column("clients", sa.Column("webhook_secret", sa.Text(), nullable=True))
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("topic", sa.String(32), nullable=False),
        sa.Column("client_id", sa.String(63), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", INSTANT, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.Column("sent_at", INSTANT, nullable=True),
        sa.CheckConstraint("status IN ('pending', 'sent', 'dead')",
                           name=op.f("ck_outbox_status")),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_outbox_attempts")),
        sa.ForeignKeyConstraint(["client_id"], ["clients.client_id"],
                                name=op.f("fk_outbox_client_id_clients")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("event_id", name=op.f("uq_outbox_event_id")),
    )
    op.create_index(op.f("ix_outbox_status_next_attempt_at"), "outbox",
                    ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_outbox_status_next_attempt_at"), table_name="outbox")
    op.drop_table("outbox")
    for column in ("webhook_secret", "webhook_url", "push_secret", "source"):
        op.drop_column("clients", column)

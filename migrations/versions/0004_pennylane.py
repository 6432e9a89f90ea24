"""Pushing entries to Pennylane: each client's Pennylane settings, and one push per entry.

* ``pennylane_settings``: per client, whether its entries are pushed, the code of the sales
  journal in its Pennylane company (``VT`` unless told) and the NAME of its API token, an
  environment variable (``token_source`` ``env``) or a Prefect Secret block (``block``). The
  token itself is never stored in the ledger.
* ``pennylane_pushes``: one row per entry (or reversal) to push, ``pending`` until Pennylane
  has it, then ``pushed`` with its id there (``remote_id``), written in the same transaction
  that marks the outbox message sent. ``post_attempts`` counts the POSTs sent, so that a push
  after an uncertain failure looks the entry up before posting it again.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INSTANT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "pennylane_settings",
        sa.Column("client_id", sa.String(63), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("journal_code", sa.String(8), server_default="VT", nullable=False),
        sa.Column("token_source", sa.String(8), nullable=False),
        sa.Column("token_name", sa.Text(), nullable=False),
        sa.Column("updated_at", INSTANT, nullable=False),
        sa.CheckConstraint("token_source IN ('env', 'block')",
                           name=op.f("ck_pennylane_settings_token_source")),
        sa.ForeignKeyConstraint(["client_id"], ["clients.client_id"],
                                name=op.f("fk_pennylane_settings_client_id_clients")),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_pennylane_settings")),
    )
    op.create_table(
        "pennylane_pushes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(63), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=True),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("remote_id", sa.String(64), nullable=True),
        sa.Column("post_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.Column("pushed_at", INSTANT, nullable=True),
        sa.CheckConstraint("status IN ('pending', 'pushed')",
                           name=op.f("ck_pennylane_pushes_status")),
        sa.CheckConstraint("status <> 'pushed' OR remote_id IS NOT NULL",
                           name=op.f("ck_pennylane_pushes_remote_id")),
        sa.CheckConstraint("post_attempts >= 0", name=op.f("ck_pennylane_pushes_post_attempts")),
        sa.ForeignKeyConstraint(["entry_id"], ["entries.id"],
                                name=op.f("fk_pennylane_pushes_entry_id_entries")),
        sa.ForeignKeyConstraint(["client_id"], ["clients.client_id"],
                                name=op.f("fk_pennylane_pushes_client_id_clients")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pennylane_pushes")),
        sa.UniqueConstraint("entry_id", name=op.f("uq_pennylane_pushes_entry_id")),
    )
    op.create_index(op.f("ix_pennylane_pushes_client_id_status"), "pennylane_pushes",
                    ["client_id", "status"])


def downgrade() -> None:
    op.drop_index(op.f("ix_pennylane_pushes_client_id_status"), table_name="pennylane_pushes")
    op.drop_table("pennylane_pushes")
    op.drop_table("pennylane_settings")

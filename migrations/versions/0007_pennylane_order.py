"""Pennylane in ledger order: claims told apart from retries, and a cache of Pennylane's ids.

* ``outbox.claimed_until``: set while a relay (or ``pennylane push``) holds a message, cleared
  when its delivery ends. A message waiting for a retry and a message being delivered both have
  a future ``next_attempt_at``; only the second must be left alone by a push that sends "now".
* ``pennylane_ids``: the ids of a Pennylane company's journals and ledger accounts, by code or
  number, with when they were fetched. The company is named by its token's fingerprint, so
  every process and every client of the company shares them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INSTANT = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("claimed_until", INSTANT, nullable=True))
    op.create_table(
        "pennylane_ids",
        sa.Column("company", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("remote_id", sa.BigInteger(), nullable=False),
        sa.Column("fetched_at", INSTANT, nullable=False),
        sa.CheckConstraint("kind IN ('journal', 'account')", name=op.f("ck_pennylane_ids_kind")),
        sa.PrimaryKeyConstraint("company", "kind", "code", name=op.f("pk_pennylane_ids")),
    )


def downgrade() -> None:
    op.drop_table("pennylane_ids")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("claimed_until")

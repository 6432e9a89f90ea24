"""Bounds at the door: 64-bit closure numbers, the ``error`` day state, webhook message ids.

* ``closures.closure_number`` becomes a 64-bit integer on PostgreSQL, as it already is on
  SQLite (whose INTEGER holds 64 bits): the reader refuses a number beyond ``bounds.MAX_INT``,
  and every number it lets in is stored on both.
* the day state ``error``: a run failed on something unexpected (a bug, not the POS's data nor
  a mapping); the day records the error's type and message for the data team, instead of
  staying ``received`` as if it had never run.
* ``webhook_messages``: the ``webhook-id`` of each push a client's sender made, with the SHA-256
  of its body: an identical replay is answered as before, a reused id with another body is
  refused (409).

Downgrading turns ``error`` days back into ``received`` (what 0005 had for them).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INSTANT = sa.DateTime(timezone=True)

STATES_0005 = ("received", "posted", "flagged", "refused", "missing", "empty", "waiting")
STATES_0006 = (*STATES_0005, "error")


def _state_check(states: tuple[str, ...]) -> str:
    return f"state IN ({', '.join(repr(s) for s in states)})"


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.alter_column("closures", "closure_number", type_=sa.BigInteger(),
                        existing_type=sa.Integer(), existing_nullable=True)
    with op.batch_alter_table("client_days") as batch:
        batch.drop_constraint(op.f("ck_client_days_state"), type_="check")
        batch.create_check_constraint(op.f("ck_client_days_state"), _state_check(STATES_0006))
    op.create_table(
        "webhook_messages",
        sa.Column("client_id", sa.String(63), nullable=False),
        sa.Column("webhook_id", sa.String(128), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("received_at", INSTANT, nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["clients.client_id"],
                                name=op.f("fk_webhook_messages_client_id_clients")),
        sa.PrimaryKeyConstraint("client_id", "webhook_id", name=op.f("pk_webhook_messages")),
    )


def downgrade() -> None:
    op.drop_table("webhook_messages")
    op.execute("UPDATE client_days SET state = 'received' WHERE state = 'error'")
    with op.batch_alter_table("client_days") as batch:
        batch.drop_constraint(op.f("ck_client_days_state"), type_="check")
        batch.create_check_constraint(op.f("ck_client_days_state"), _state_check(STATES_0005))
    if op.get_context().dialect.name == "postgresql":
        op.alter_column("closures", "closure_number", type_=sa.Integer(),
                        existing_type=sa.BigInteger(), existing_nullable=True)

"""Running a fleet: a deadline per client, a claim per client-day, and the ``waiting`` state.

* ``clients.deadline_hour``: the client's local hour, on the day after the business day, until
  which a missing closure is waited for (existing clients get 12, the default).
* ``client_days.claimed_by`` / ``claimed_until``: the flow run holding the day and the end of its
  lease, so that the database, not only the orchestrator, keeps a client-day from running twice
  at once.
* the day state ``waiting``: no closure yet, before the deadline.

SQLite cannot alter a CHECK constraint: ``batch_alter_table`` copies ``client_days`` into a new
table with the new constraint (nothing references ``client_days``, so the copy is safe with
foreign keys on). ``clients`` is only altered in place (ADD / DROP COLUMN, SQLite 3.35+): a
copy would drop a table that every other table references.

Downgrading turns ``waiting`` days back into ``received`` (a day row with no result yet, which
is what 0001 had for them) and drops the claims.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INSTANT = sa.DateTime(timezone=True)

STATES_0001 = ("received", "posted", "flagged", "refused", "missing", "empty")
STATES_0002 = (*STATES_0001, "waiting")


def _state_check(states: tuple[str, ...]) -> str:
    return f"state IN ({', '.join(repr(s) for s in states)})"


def upgrade() -> None:
    # ADD COLUMN with a constant default needs no table copy, even on SQLite.
    op.add_column(
        "clients",
        sa.Column("deadline_hour", sa.Integer(), server_default="12", nullable=False),
    )
    with op.batch_alter_table("client_days") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("claimed_until", INSTANT, nullable=True))
        batch.drop_constraint(op.f("ck_client_days_state"), type_="check")
        batch.create_check_constraint(op.f("ck_client_days_state"), _state_check(STATES_0002))


def downgrade() -> None:
    op.execute("UPDATE client_days SET state = 'received' WHERE state = 'waiting'")
    with op.batch_alter_table("client_days") as batch:
        batch.drop_constraint(op.f("ck_client_days_state"), type_="check")
        batch.create_check_constraint(op.f("ck_client_days_state"), _state_check(STATES_0001))
        batch.drop_column("claimed_until")
        batch.drop_column("claimed_by")
    op.drop_column("clients", "deadline_hour")

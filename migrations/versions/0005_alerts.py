"""Alerts once: each client-day remembers the alert it raised, and the run that raised it.

* ``client_days.alert_key``: a fingerprint of the open alert of the day (its outcome and its
  errors), set when a run flags the day (POS data error, mapping error, missing closure) with
  findings that differ from the open alert's, cleared when the day is posted. A rerun with the
  same findings finds the same key: no new notification to Toporder, no new flagged event.
* ``client_days.alert_outcome`` / ``alert_run_id``: which outcome that alert was and the run
  (a Prefect flow run id) that raised it; kept once the day is posted, so that the board and
  the resolving run can link the red run to the one that resolved it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("client_days") as batch:
        batch.add_column(sa.Column("alert_key", sa.String(64), nullable=True))
        batch.add_column(sa.Column("alert_outcome", sa.String(32), nullable=True))
        batch.add_column(sa.Column("alert_run_id", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("client_days") as batch:
        batch.drop_column("alert_run_id")
        batch.drop_column("alert_outcome")
        batch.drop_column("alert_key")

"""The ledger: clients, mappings, the closure inbox, client-days, entries and methods seen.

Column types are spelled out here rather than imported, so that this revision keeps creating
the same schema whatever later becomes of the application code:

* money is ``numeric(14, 2)`` on PostgreSQL and integer cents on SQLite, which has no exact
  decimal type (``toporder_sync.ledger.tables.Money`` converts);
* payment-method names use the "C" collation on PostgreSQL so that they compare byte for byte,
  as SQLite's default BINARY collation does;
* closures, entries and entry lines are immutable: triggers refuse any UPDATE or DELETE, so a
  correction can only be a reversal plus a new entry (PCG art. 420-5).

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(14, 2).with_variant(sa.BigInteger(), "sqlite")
EXACT_TEXT = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
INSTANT = sa.DateTime(timezone=True)

IMMUTABLE_TABLES = ("closures", "entries", "entry_lines")


def upgrade() -> None:
    op.create_table(
        "clients",
        sa.Column("client_id", sa.String(63), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("integration_id", sa.String(64), nullable=False),
        sa.Column("activated_on", sa.Date(), nullable=False),
        sa.Column("territory", sa.String(16), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("run_hour", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("account_overrides", sa.JSON(), nullable=False),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_clients")),
        sa.UniqueConstraint("integration_id", name=op.f("uq_clients_integration_id")),
        sa.CheckConstraint(
            "territory IN ('metropole', 'corse', 'dom')", name=op.f("ck_clients_territory")
        ),
    )
    op.create_table(
        "mappings",
        sa.Column("client_id", sa.String(63), nullable=False),
        sa.Column("method", EXACT_TEXT, nullable=False),
        sa.Column("account", sa.String(12), nullable=False),
        sa.Column("updated_at", INSTANT, nullable=False),
        sa.PrimaryKeyConstraint("client_id", "method", name=op.f("pk_mappings")),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.client_id"], name=op.f("fk_mappings_client_id_clients")
        ),
    )
    op.create_table(
        "closures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(63), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", INSTANT, nullable=False),
        sa.Column("closure_number", sa.Integer(), nullable=True),
        sa.Column("establishment_id", sa.Text(), nullable=True),
        sa.Column("perpetual_total", MONEY, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_closures")),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.client_id"], name=op.f("fk_closures_client_id_clients")
        ),
        sa.UniqueConstraint("client_id", "sha256", name=op.f("uq_closures_client_id_sha256")),
    )
    op.create_index(
        op.f("ix_closures_client_id_business_date"), "closures", ["client_id", "business_date"]
    )
    op.create_table(
        "entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(63), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("journal", sa.String(8), nullable=False),
        sa.Column("journal_label", sa.Text(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("piece_ref", sa.Text(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("closure_id", sa.Integer(), nullable=False),
        sa.Column("reverses_id", sa.Integer(), nullable=True),
        sa.Column("posted_at", INSTANT, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entries")),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.client_id"], name=op.f("fk_entries_client_id_clients")
        ),
        sa.ForeignKeyConstraint(
            ["closure_id"], ["closures.id"], name=op.f("fk_entries_closure_id_closures")
        ),
        sa.ForeignKeyConstraint(
            ["reverses_id"], ["entries.id"], name=op.f("fk_entries_reverses_id_entries")
        ),
        # Entry numbers are a gapless sequence per client and journal.
        sa.UniqueConstraint(
            "client_id", "journal", "number", name=op.f("uq_entries_client_id_journal_number")
        ),
        # The n-th entry (or reversal) of a client-day exists once: two runs of one day that
        # both got past the locks still cannot both post.
        sa.UniqueConstraint(
            "client_id", "business_date", "kind", "revision",
            name=op.f("uq_entries_client_id_business_date_kind_revision"),
        ),
        sa.CheckConstraint("revision >= 1", name=op.f("ck_entries_revision")),
        # An entry is reversed at most once.
        sa.UniqueConstraint("reverses_id", name=op.f("uq_entries_reverses_id")),
        sa.CheckConstraint("kind IN ('entry', 'reversal')", name=op.f("ck_entries_kind")),
        sa.CheckConstraint("number >= 1", name=op.f("ck_entries_number")),
    )
    op.create_index(
        op.f("ix_entries_client_id_business_date"), "entries", ["client_id", "business_date"]
    )
    op.create_table(
        "entry_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("account", sa.String(12), nullable=False),
        sa.Column("account_label", sa.Text(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("debit", MONEY, nullable=False),
        sa.Column("credit", MONEY, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entry_lines")),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["entries.id"], name=op.f("fk_entry_lines_entry_id_entries")
        ),
        sa.UniqueConstraint("entry_id", "line_no", name=op.f("uq_entry_lines_entry_id_line_no")),
        # One side per line, never negative.
        sa.CheckConstraint(
            "debit >= 0 AND credit >= 0 AND (debit = 0) <> (credit = 0)",
            name=op.f("ck_entry_lines_side"),
        ),
    )
    op.create_table(
        "client_days",
        sa.Column("client_id", sa.String(63), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error_category", sa.String(16), nullable=True),
        sa.Column("messages", sa.JSON(), nullable=False),
        sa.Column("warnings", sa.JSON(), nullable=False),
        sa.Column("closure_id", sa.Integer(), nullable=True),
        sa.Column("entry_id", sa.Integer(), nullable=True),
        sa.Column("flow_run_id", sa.String(64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("updated_at", INSTANT, nullable=False),
        sa.PrimaryKeyConstraint("client_id", "business_date", name=op.f("pk_client_days")),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.client_id"], name=op.f("fk_client_days_client_id_clients")
        ),
        sa.ForeignKeyConstraint(
            ["closure_id"], ["closures.id"], name=op.f("fk_client_days_closure_id_closures")
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["entries.id"], name=op.f("fk_client_days_entry_id_entries")
        ),
        sa.CheckConstraint(
            "state IN ('received', 'posted', 'flagged', 'refused', 'missing', 'empty')",
            name=op.f("ck_client_days_state"),
        ),
        sa.CheckConstraint(
            "error_category IS NULL OR error_category IN ('pos', 'ledger')",
            name=op.f("ck_client_days_error_category"),
        ),
    )
    op.create_table(
        "methods_seen",
        sa.Column("client_id", sa.String(63), nullable=False),
        sa.Column("name", EXACT_TEXT, nullable=False),
        sa.Column("first_seen", sa.Date(), nullable=False),
        sa.Column("last_seen", sa.Date(), nullable=False),
        sa.Column("account", sa.String(12), nullable=False),
        sa.Column("rule", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "name", name=op.f("pk_methods_seen")),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.client_id"], name=op.f("fk_methods_seen_client_id_clients")
        ),
        sa.CheckConstraint(
            "rule IN ('exact', 'near_miss', 'default', 'fallback')",
            name=op.f("ck_methods_seen_rule"),
        ),
    )
    _create_immutability_triggers()


def _create_immutability_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'rows of % are never updated or deleted', TG_TABLE_NAME
                    USING ERRCODE = 'restrict_violation';
            END
            $$
            """
        )
        for table in IMMUTABLE_TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()"
            )
        return
    for table in IMMUTABLE_TABLES:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'rows of {table} are never updated or deleted'); END"
            )


def downgrade() -> None:
    for table in (
        "methods_seen",
        "client_days",
        "entry_lines",
        "entries",
        "closures",
        "mappings",
        "clients",
    ):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION ledger_refuse_change()")

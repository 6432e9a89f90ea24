"""The ledger's tables as typed ORM classes, and the column types that keep them exact.

These classes describe the schema that the migrations (``0001`` to ``0007``) create; they
never create it (``db.upgrade`` does, through Alembic). A test compares them with the migrated
database.

Three column types carry the ledger's guarantees on both SQLite and PostgreSQL:

* ``Money``: ``numeric(14, 2)`` on PostgreSQL. SQLite has no exact decimal type (a NUMERIC
  column stores a binary REAL, and SQLAlchemy's ``Numeric`` goes through a float to get
  there), so there an amount is stored as integer cents. Either way Python only ever sees a
  two-decimal ``Decimal``, and a float or a sub-cent value is rejected, never coerced.
* ``UtcDateTime``: refuses naive datetimes, stores UTC, always gives back an aware UTC datetime
  (SQLite would otherwise drop the offset silently).
* ``ExactText``: compares and sorts by bytes, for payment-method names ("Carte Bancaire" and
  "carte bancaire" are two methods). SQLite's default BINARY collation already does; on
  PostgreSQL the column gets the "C" collation, whatever the database's default collation.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal, get_args

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeEngine

from toporder_sync.core.errors import Category
from toporder_sync.core.model import MatchRule, Territory
from toporder_sync.core.money import AMOUNT_LIMIT, MoneyTypeError, require_money

# "empty": a closure with no sales, no payment, nothing at all to post (a day closed idle).
# "waiting": no closure yet, and the client's deadline for it has not passed (it may come).
# "error": a run failed unexpectedly (a bug, not the data nor a mapping); the data team acts.
DayState = Literal["received", "posted", "flagged", "refused", "missing", "empty", "waiting",
                   "error"]
EntryKind = Literal["entry", "reversal"]
ClosureSourceKind = Literal["push", "pull"]
OutboxStatus = Literal["pending", "sent", "dead"]

# Numeric(14, 2) holds at most 12 integer digits; SQLite would store more, so both refuse them.
MONEY_LIMIT = AMOUNT_LIMIT


class Money(TypeDecorator[Decimal]):
    """An exact amount in euros and cents (see the module docstring)."""

    impl = Numeric(14, 2, asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return super().load_dialect_impl(dialect)

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Decimal | int | None:
        if value is None:
            return None
        amount = require_money(value)
        if abs(amount) >= MONEY_LIMIT:
            raise MoneyTypeError(f"amount {amount} does not fit numeric(14, 2)")
        return int(amount.scaleb(2)) if dialect.name == "sqlite" else amount

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return Decimal(int(value)).scaleb(-2)
        return require_money(value)


class UtcDateTime(TypeDecorator[datetime]):
    """An instant, stored in UTC (see the module docstring)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: the ledger stores instants, give a zone")
        instant = value.astimezone(UTC)
        return instant.replace(tzinfo=None) if dialect.name == "sqlite" else instant

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


ExactText = Text().with_variant(Text(collation="C"), "postgresql")

# Deterministic constraint names, identical on every backend (migration 0001 spells them out).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

TERRITORIES = tuple(t.value for t in Territory)
DAY_STATES: tuple[DayState, ...] = get_args(DayState)
ERROR_CATEGORIES = (Category.POS.value, Category.LEDGER.value)
ENTRY_KINDS: tuple[EntryKind, ...] = get_args(EntryKind)
MATCH_RULES = tuple(r.value for r in MatchRule)
OUTBOX_STATUSES: tuple[OutboxStatus, ...] = get_args(OutboxStatus)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    """SQL text of a CHECK that ``column`` holds one of ``values``."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ClientRow(Base):
    __tablename__ = "clients"
    __table_args__ = (CheckConstraint(_one_of("territory", TERRITORIES), name="territory"),)

    client_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    integration_id: Mapped[str] = mapped_column(String(64), unique=True)
    activated_on: Mapped[date] = mapped_column(Date)
    territory: Mapped[str] = mapped_column(String(16))
    timezone: Mapped[str] = mapped_column(String(64))
    run_hour: Mapped[int] = mapped_column(Integer)
    # The local hour, on the day after the business day, until which a missing closure is
    # waited for (migration 0002).
    deadline_hour: Mapped[int] = mapped_column(Integer, server_default="12")
    active: Mapped[bool]
    account_overrides: Mapped[dict[str, str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # Where its closures come from and the secrets of its signed exchanges (migration 0003).
    source: Mapped[ClosureSourceKind] = mapped_column(String(8), server_default="push")
    push_secret: Mapped[str | None] = mapped_column(Text)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    webhook_secret: Mapped[str | None] = mapped_column(Text)


class MappingRow(Base):
    __tablename__ = "mappings"

    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id"), primary_key=True)
    method: Mapped[str] = mapped_column(ExactText, primary_key=True)
    account: Mapped[str] = mapped_column(String(12))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ClosureRow(Base):
    __tablename__ = "closures"
    __table_args__ = (
        UniqueConstraint("client_id", "sha256"),
        Index(None, "client_id", "business_date"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id"))
    business_date: Mapped[date] = mapped_column(Date)
    sha256: Mapped[str] = mapped_column(String(64))
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # 64 bits on both backends (SQLite's INTEGER already is; migration 0006 for PostgreSQL).
    closure_number: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"))
    establishment_id: Mapped[str | None] = mapped_column(Text)
    perpetual_total: Mapped[Decimal | None] = mapped_column(Money)


class EntryRow(Base):
    __tablename__ = "entries"
    __table_args__ = (
        UniqueConstraint("client_id", "journal", "number"),
        # The n-th entry (or reversal) of a client-day exists once: two runs of one day that
        # both got past the locks still cannot both post.
        UniqueConstraint("client_id", "business_date", "kind", "revision"),
        CheckConstraint(_one_of("kind", ENTRY_KINDS), name="kind"),
        CheckConstraint("number >= 1", name="number"),
        Index(None, "client_id", "business_date"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id"))
    business_date: Mapped[date] = mapped_column(Date)
    journal: Mapped[str] = mapped_column(String(8))
    journal_label: Mapped[str] = mapped_column(Text)
    number: Mapped[int] = mapped_column(Integer)
    piece_ref: Mapped[str] = mapped_column(Text)
    label: Mapped[str] = mapped_column(Text)
    kind: Mapped[EntryKind] = mapped_column(String(8))
    revision: Mapped[int] = mapped_column(Integer)
    closure_id: Mapped[int] = mapped_column(ForeignKey("closures.id"))
    reverses_id: Mapped[int | None] = mapped_column(ForeignKey("entries.id"), unique=True)
    posted_at: Mapped[datetime] = mapped_column(UtcDateTime)

    lines: Mapped[list[EntryLineRow]] = relationship(order_by="EntryLineRow.line_no")


class EntryLineRow(Base):
    __tablename__ = "entry_lines"
    __table_args__ = (
        UniqueConstraint("entry_id", "line_no"),
        CheckConstraint("debit >= 0 AND credit >= 0 AND (debit = 0) <> (credit = 0)", name="side"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("entries.id"))
    line_no: Mapped[int] = mapped_column(Integer)
    account: Mapped[str] = mapped_column(String(12))
    account_label: Mapped[str] = mapped_column(Text)
    label: Mapped[str] = mapped_column(Text)
    debit: Mapped[Decimal] = mapped_column(Money)
    credit: Mapped[Decimal] = mapped_column(Money)


class ClientDayRow(Base):
    __tablename__ = "client_days"
    __table_args__ = (
        CheckConstraint(_one_of("state", DAY_STATES), name="state"),
        CheckConstraint(
            f"error_category IS NULL OR {_one_of('error_category', ERROR_CATEGORIES)}",
            name="error_category",
        ),
    )

    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id"), primary_key=True)
    business_date: Mapped[date] = mapped_column(Date, primary_key=True)
    state: Mapped[DayState] = mapped_column(String(16))
    error_category: Mapped[str | None] = mapped_column(String(16))
    messages: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    warnings: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    closure_id: Mapped[int | None] = mapped_column(ForeignKey("closures.id"))
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("entries.id"))
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    # The flow run holding the day and until when (migration 0002): see claims.claim_day.
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # The day's open alert and the run that raised it (migration 0005): see days.open_alert.
    alert_key: Mapped[str | None] = mapped_column(String(64))
    alert_outcome: Mapped[str | None] = mapped_column(String(32))
    alert_run_id: Mapped[str | None] = mapped_column(String(64))


class WebhookMessageRow(Base):
    """The ``webhook-id`` of a push a client's sender made, and the SHA-256 of its body
    (migration 0006): a reused id with another body is refused (``receiver``)."""

    __tablename__ = "webhook_messages"

    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id"), primary_key=True)
    webhook_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)


class MethodSeenRow(Base):
    __tablename__ = "methods_seen"
    __table_args__ = (CheckConstraint(_one_of("rule", MATCH_RULES), name="rule"),)

    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id"), primary_key=True)
    name: Mapped[str] = mapped_column(ExactText, primary_key=True)
    first_seen: Mapped[date] = mapped_column(Date)
    last_seen: Mapped[date] = mapped_column(Date)
    account: Mapped[str] = mapped_column(String(12))
    rule: Mapped[str] = mapped_column(String(16))


class OutboxRow(Base):
    """A message to deliver at least once, written with the ledger change it announces."""

    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint(_one_of("status", OUTBOX_STATUSES), name="status"),
        CheckConstraint("attempts >= 0", name="attempts"),
        Index(None, "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    topic: Mapped[str] = mapped_column(String(32))
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id"))
    business_date: Mapped[date | None] = mapped_column(Date)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[OutboxStatus] = mapped_column(String(8))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Set while a relay (or a push) delivers the message, cleared when it is done (0007).
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime)


# --- Pennylane (migration 0004) ---------------------------------------------------------

PennylaneTokenSource = Literal["env", "block"]
PennylanePushStatus = Literal["pending", "pushed"]
PENNYLANE_TOKEN_SOURCES: tuple[PennylaneTokenSource, ...] = get_args(PennylaneTokenSource)
PENNYLANE_PUSH_STATUSES: tuple[PennylanePushStatus, ...] = get_args(PennylanePushStatus)


class PennylaneSettingsRow(Base):
    """Where a client's entries go in Pennylane: the journal, and the NAME of its API token.

    The token itself is never stored: ``token_name`` is an environment variable
    (``token_source`` ``env``) or a Prefect Secret block (``block``) read when pushing.
    """

    __tablename__ = "pennylane_settings"
    __table_args__ = (
        CheckConstraint(_one_of("token_source", PENNYLANE_TOKEN_SOURCES), name="token_source"),
    )

    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id"), primary_key=True)
    enabled: Mapped[bool]
    journal_code: Mapped[str] = mapped_column(String(8), server_default="VT")
    token_source: Mapped[PennylaneTokenSource] = mapped_column(String(8))
    token_name: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class PennylanePushRow(Base):
    """One entry (or reversal) on its way to Pennylane, then its id there once pushed.

    ``post_attempts`` counts the POSTs sent (committed before each one): a push that finds it
    above zero looks the entry up in Pennylane before posting again (the API has no
    idempotency key). ``event_id`` is the outbox message currently carrying the push.
    """

    __tablename__ = "pennylane_pushes"
    __table_args__ = (
        CheckConstraint(_one_of("status", PENNYLANE_PUSH_STATUSES), name="status"),
        CheckConstraint("status <> 'pushed' OR remote_id IS NOT NULL", name="remote_id"),
        CheckConstraint("post_attempts >= 0", name="post_attempts"),
        Index(None, "client_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("entries.id"), unique=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id"))
    event_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[PennylanePushStatus] = mapped_column(String(8))
    remote_id: Mapped[str | None] = mapped_column(String(64))
    post_attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    pushed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


PennylaneIdKind = Literal["journal", "account"]
PENNYLANE_ID_KINDS: tuple[PennylaneIdKind, ...] = get_args(PennylaneIdKind)


class PennylaneIdRow(Base):
    """The id of a journal (by code) or a ledger account (by number) in a Pennylane company.

    ``company`` is the fingerprint of the company's API token; ``fetched_at`` dates the lookup,
    so that an id is asked again once its lifetime is over (migration 0007).
    """

    __tablename__ = "pennylane_ids"
    __table_args__ = (CheckConstraint(_one_of("kind", PENNYLANE_ID_KINDS), name="kind"),)

    company: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[PennylaneIdKind] = mapped_column(String(8), primary_key=True)
    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    remote_id: Mapped[int] = mapped_column(BigInteger)
    fetched_at: Mapped[datetime] = mapped_column(UtcDateTime)

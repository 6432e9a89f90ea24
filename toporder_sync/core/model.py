"""Domain records of the accounting core: frozen, slotted dataclasses.

A ``Closure`` is one establishment's ticket Z for one business day, read from the v1 format
(``closure-v1.md``). A ``ClientSettings`` is what the ledger side knows of a client (territory,
account overrides, explicit mappings). An ``Entry`` is the balanced sales-journal entry built
from a closure. None of these hold a float: every amount is a two-decimal ``Decimal``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType


class Territory(StrEnum):
    METROPOLE = "metropole"
    CORSE = "corse"
    DOM = "dom"


class LineKind(StrEnum):
    SALE = "sale"
    REFUND = "refund"
    GIFT_CARD = "gift_card"
    TIP = "tip"


@dataclass(frozen=True, slots=True)
class VatLine:
    vat_rate: Decimal
    net: Decimal
    vat: Decimal
    gross: Decimal


@dataclass(frozen=True, slots=True)
class MethodAmount:
    method: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class CashCount:
    method: str
    expected: Decimal
    counted: Decimal


@dataclass(frozen=True, slots=True)
class TicketLine:
    kind: LineKind
    vat_rate: Decimal | None
    gross: Decimal


@dataclass(frozen=True, slots=True)
class Ticket:
    number: str
    closed_at: datetime
    lines: tuple[TicketLine, ...]
    payments: tuple[MethodAmount, ...]


@dataclass(frozen=True, slots=True)
class Closure:
    integration_id: str
    establishment_id: str
    establishment_name: str
    number: int
    business_date: date
    opened_at: datetime
    closed_at: datetime
    currency: str
    period_total: Decimal
    perpetual_total: Decimal
    sales: tuple[VatLine, ...]
    refunds: tuple[VatLine, ...]
    payments: tuple[MethodAmount, ...]
    tips: tuple[MethodAmount, ...]
    gift_cards_sold: Decimal
    cash_count: CashCount | None
    tickets: tuple[Ticket, ...]

    @property
    def piece_ref(self) -> str:
        return f"Z{self.number}"


@dataclass(frozen=True, slots=True)
class PreviousClosure:
    """What identity 6 (continuity) needs of the previous closure of the establishment."""

    number: int
    perpetual_total: Decimal
    business_date: date


def _frozen(mapping: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """What the ledger side knows of a client, as the core needs it.

    ``account_overrides`` replaces default accounts by key (see ``accounts.ACCOUNT_KEYS``);
    ``mappings`` maps an exact Toporder method name to an account number.
    """

    client_id: str
    territory: Territory = Territory.METROPOLE
    account_overrides: Mapping[str, str] = field(default_factory=lambda: _frozen(None))
    mappings: Mapping[str, str] = field(default_factory=lambda: _frozen(None))

    def __post_init__(self) -> None:
        object.__setattr__(self, "account_overrides", _frozen(self.account_overrides))
        object.__setattr__(self, "mappings", _frozen(self.mappings))

    def __reduce__(self) -> tuple[type[ClientSettings], tuple[object, ...]]:
        # pickle knows no read-only mapping: the settings cross to a worker process as plain
        # dicts, frozen again on arrival (``toporder_sync.core_processes``).
        return ClientSettings, (self.client_id, self.territory, dict(self.account_overrides),
                                dict(self.mappings))


class MatchRule(StrEnum):
    EXACT = "exact"
    NEAR_MISS = "near_miss"
    DEFAULT = "default"
    FALLBACK = "fallback"


@dataclass(frozen=True, slots=True)
class MethodMatch:
    """Where one payment method of a closure goes, and by which rule."""

    method: str
    account: str
    rule: MatchRule
    mapping_name: str | None = None


@dataclass(frozen=True, slots=True)
class EntryLine:
    account: str
    account_label: str
    label: str
    debit: Decimal
    credit: Decimal


@dataclass(frozen=True, slots=True)
class Entry:
    journal: str
    journal_label: str
    date: date
    piece_ref: str
    label: str
    lines: tuple[EntryLine, ...]

    @property
    def total_debit(self) -> Decimal:
        return sum((line.debit for line in self.lines), Decimal("0.00"))

    @property
    def total_credit(self) -> Decimal:
        return sum((line.credit for line in self.lines), Decimal("0.00"))

    @property
    def is_balanced(self) -> bool:
        return self.total_debit == self.total_credit

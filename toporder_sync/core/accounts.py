"""Default accounts, VAT rates in force by territory, and account validity.

Source: ``accounting-rules.md`` (revenue and VAT accounts by rate, default links of payment
methods). Every default can be overridden per client by key; the keys are ``revenue:<rate>``,
``vat:<rate>`` and the names in ``FIXED_ACCOUNTS``. Tables are immutable (tuples and
read-only mappings): no caller can change a rule for everyone by accident.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType

from toporder_sync.core.model import Territory


@dataclass(frozen=True, slots=True)
class RateAccounts:
    rate: Decimal
    revenue: str
    vat: str
    territories: frozenset[Territory]


_M, _C, _D = Territory.METROPOLE, Territory.CORSE, Territory.DOM

RATES: tuple[RateAccounts, ...] = (
    RateAccounts(Decimal("20"), "706200", "445711", frozenset({_M, _C})),
    RateAccounts(Decimal("10"), "706100", "445712", frozenset({_M, _C})),
    RateAccounts(Decimal("5.5"), "706055", "445713", frozenset({_M, _C})),
    RateAccounts(Decimal("2.1"), "706021", "445714", frozenset({_M, _C, _D})),
    RateAccounts(Decimal("13"), "706130", "445715", frozenset({_C})),
    RateAccounts(Decimal("0.9"), "706009", "445716", frozenset({_C})),
    RateAccounts(Decimal("8.5"), "706085", "445717", frozenset({_D})),
    RateAccounts(Decimal("1.75"), "706175", "445718", frozenset({_D})),
    RateAccounts(Decimal("1.05"), "706105", "445719", frozenset({_D})),
)

RATES_BY_VALUE: Mapping[Decimal, RateAccounts] = MappingProxyType({r.rate: r for r in RATES})


def rates_in_force(territory: Territory) -> frozenset[Decimal]:
    return frozenset(r.rate for r in RATES if territory in r.territories)


# Fixed accounts of the entry, by override key.
GIFT_CARDS = "gift_cards"
TIPS = "tips"
OTHER_METHODS = "other_methods"
CASH_SHORTAGE = "cash_shortage"
CASH_SURPLUS = "cash_surplus"

FIXED_ACCOUNTS: Mapping[str, str] = MappingProxyType(
    {
        GIFT_CARDS: "419100",
        TIPS: "467500",
        OTHER_METHODS: "471000",
        CASH_SHORTAGE: "658000",
        CASH_SURPLUS: "758000",
    }
)

ACCOUNT_KEYS: tuple[str, ...] = (
    *(f"revenue:{r.rate}" for r in RATES),
    *(f"vat:{r.rate}" for r in RATES),
    *FIXED_ACCOUNTS,
)

# Labels of the default accounts (FEC CompteLib must never be empty).
ACCOUNT_LABELS: Mapping[str, str] = MappingProxyType(
    {
        "419100": "Cartes cadeaux et avoirs clients",
        "467500": "Pourboires à reverser",
        "471000": "Autres méthodes de paiement",
        "658000": "Écarts de caisse (charges)",
        "758000": "Écarts de caisse (produits)",
        "511500": "Cartes bancaires à encaisser",
        "530000": "Caisse",
        "511200": "Chèques à encaisser",
        "511800": "Titres-restaurant à encaisser",
        "580000": "Virements internes",
        "467100": "Plateformes de livraison",
        **{r.revenue: f"Ventes TVA {r.rate}%" for r in RATES},
        **{r.vat: f"TVA collectée {r.rate}%" for r in RATES},
    }
)

# Labels by PCG prefix for accounts a client brings (longest prefix wins).
_PREFIX_LABELS: tuple[tuple[str, str], ...] = (
    ("4457", "TVA collectée"),
    ("445", "État - Taxes sur le chiffre d'affaires"),
    ("419", "Clients - Avances et acomptes reçus"),
    ("411", "Clients"),
    ("41", "Clients et comptes rattachés"),
    ("467", "Autres comptes débiteurs ou créditeurs"),
    ("47", "Comptes transitoires ou d'attente"),
    ("46", "Débiteurs et créditeurs divers"),
    ("4", "Comptes de tiers"),
    ("511", "Valeurs à l'encaissement"),
    ("512", "Banques"),
    ("53", "Caisse"),
    ("58", "Virements internes"),
    ("5", "Comptes financiers"),
    ("6", "Charges"),
    ("706", "Prestations de services"),
    ("707", "Ventes de marchandises"),
    ("70", "Ventes"),
    ("7", "Produits"),
)

ACCOUNT_NUMBER = re.compile(r"^[1-8][0-9]{2,11}$")


def account_label(account: str) -> str:
    """A non-empty label for any account number."""
    if account in ACCOUNT_LABELS:
        return ACCOUNT_LABELS[account]
    for prefix, label in _PREFIX_LABELS:
        if account.startswith(prefix):
            return f"{label} {account}"
    return f"Compte {account}"


def account_problem(account: str, key: str) -> str | None:
    """Why ``account`` cannot be used for ``key`` (an override key or ``method``), or None.

    An accountant's rules: a PCG number of 3 to 12 digits; a payment method settles into a
    third-party or financial account (class 4 or 5); revenue into class 7; VAT into 445.
    """
    if not ACCOUNT_NUMBER.match(account):
        return f"{account!r} is not an account number (3 to 12 digits, class 1 to 8)"
    if key == "method" and account[0] not in "45":
        return f"a payment method must go to a class 4 or 5 account, not {account}"
    if key.startswith("revenue:") and account[0] != "7":
        return f"revenue must go to a class 7 account, not {account}"
    if key.startswith("vat:") and not account.startswith("445"):
        return f"VAT collected must go to a 445 account, not {account}"
    if key == CASH_SHORTAGE and account[0] != "6":
        return f"a cash shortage is a charge (class 6), not {account}"
    if key == CASH_SURPLUS and account[0] != "7":
        return f"a cash surplus is a product (class 7), not {account}"
    if key in (GIFT_CARDS, TIPS, OTHER_METHODS) and account[0] != "4":
        return f"{key} must go to a class 4 account, not {account}"
    return None


def resolve(overrides: Mapping[str, str], key: str, default: str) -> str:
    return overrides.get(key, default)

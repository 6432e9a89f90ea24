"""Payment-method matching, in the order of accounting-rules.md (table-driven)."""

from __future__ import annotations

import pytest

from toporder_sync.core.errors import Category
from toporder_sync.core.mapping import default_account, match_method
from toporder_sync.core.model import ClientSettings, MatchRule

DEFAULTS = [
    ("Carte Bancaire", "511500"), ("CB", "511500"), ("cb sans contact", "511500"),
    ("Carte Bleue", "511500"), ("VISA", "511500"), ("Mastercard", "511500"),
    ("Amex", "511500"), ("American Express", "511500"), ("TPE", "511500"),
    ("Espèces", "530000"), ("especes", "530000"), ("ESPECES", "530000"), ("Cash", "530000"),
    ("Liquide", "530000"), ("Chèque", "511200"), ("cheque", "511200"),
    ("Ticket Restaurant", "511800"), ("Titre-Restaurant", "511800"), ("Ticket resto", "511800"),
    ("Swile", "511800"), ("Edenred", "511800"), ("Conecs", "511800"),
    ("Up Déjeuner", "511800"), ("Pluxee", "511800"), ("Sodexo", "511800"),
    ("Bimpli", "511800"), ("Apetiz", "511800"), ("Virement", "580000"),
    ("Carte Cadeau", "419100"), ("Bon cadeau", "419100"), ("Avoir", "419100"),
    ("Uber Eats", "467100"), ("UberEats", "467100"), ("Deliveroo", "467100"),
    ("Just Eat", "467100"), ("Carte\u00a0Bancaire", "511500"), ("Esp\u200bèces", "530000"),
]


@pytest.mark.parametrize(("name", "account"), DEFAULTS)
def test_default_links(name: str, account: str) -> None:
    assert default_account(name) == account


@pytest.mark.parametrize("name", ["Lydia", "Paypal", "Chq", "Cbx", "Scabreux", "Cartes", ""])
def test_names_no_rule_recognises(name: str) -> None:
    assert default_account(name) is None


SETTINGS = ClientSettings("c", mappings={"Carte bancaire": "511510", "Lydia": "511600",
                                         "Bad": "706100"})

CASES = [
    # method, account, rule, finding category (None: no finding)
    ("Lydia", "511600", MatchRule.EXACT, None),
    ("Carte bancaire", "511510", MatchRule.EXACT, None),
    ("Carte Bancaire", "511510", MatchRule.NEAR_MISS, Category.LEDGER),
    ("carte  bancaire", "511510", MatchRule.NEAR_MISS, Category.LEDGER),
    ("Carte\u00a0bancaire", "511510", MatchRule.NEAR_MISS, Category.LEDGER),
    ("LYDIA", "511600", MatchRule.NEAR_MISS, Category.LEDGER),
    ("Espèces", "530000", MatchRule.DEFAULT, None),
    ("Paypal", "471000", MatchRule.FALLBACK, Category.WARNING),
    ("Bad", "706100", MatchRule.EXACT, Category.LEDGER),
]


@pytest.mark.parametrize(("method", "account", "rule", "category"), CASES)
def test_matching_order(method: str, account: str, rule: MatchRule,
                        category: Category | None) -> None:
    match, finding = match_method(method, SETTINGS)
    assert (match.account, match.rule) == (account, rule)
    assert (finding.category if finding else None) == category


def test_near_miss_message_names_both_spellings() -> None:
    _, finding = match_method("Carte Bancaire", SETTINGS)
    assert finding is not None and finding.rule == "mapping_near_miss"
    assert "mapping 'Carte bancaire' does not match method 'Carte Bancaire' exactly" in (
        finding.message)


def test_fallback_account_can_be_overridden() -> None:
    settings = ClientSettings("c", account_overrides={"other_methods": "471100"})
    match, finding = match_method("Paypal", settings)
    assert match.account == "471100" and finding is not None and "471100" in finding.message

"""``core.placement``: where a posted entry carries each payment method, re-derived from its
closure. Table-driven: an entry is built with the settings of the day it was posted, then read
back with the settings of today."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from samples import encode, sample_document

from toporder_sync.core import placement
from toporder_sync.core.closure import parse_closure
from toporder_sync.core.entry import build_entry
from toporder_sync.core.mapping import match_methods
from toporder_sync.core.model import ClientSettings, Closure, Entry, MatchRule
from toporder_sync.core.placement import Placement, placements


def _closure(payments: list[tuple[str, str]] | None = None) -> Closure:
    """The sample with an unknown method (Lydia 30.00), its payments replaced if given (the
    total stays 1,525.00: 895 card, 200 Swile, 400 cash expected, 398 counted, 30 others)."""
    document: dict[str, Any] = sample_document("valid-unknown-method.json")
    if payments is not None:
        document["payments"] = [{"method": m, "amount": a} for m, a in payments]
    return parse_closure(encode(document), "sample.json")


def _posted(closure: Closure, settings: ClientSettings) -> Entry:
    mapping = match_methods((p.method for p in closure.payments), settings)
    return build_entry(closure, settings, mapping)


def _settings(mappings: dict[str, str] | None = None,
              overrides: dict[str, str] | None = None) -> ClientSettings:
    return ClientSettings("zinc", mappings=mappings or {}, account_overrides=overrides or {})


SAMPLE = None  # the sample's payments as they are
TWO_UNKNOWN = [("Carte Bancaire", "895.00"), ("Swile", "200.00"), ("Lydia", "20.00"),
               ("Paylib", "10.00"), ("Espèces", "400.00")]
# Lydia and Swile of equal amounts: posted, Lydia on 471000 and Swile on 511800 explain the
# entry as well as the other way round.
EQUAL = [("Carte Bancaire", "725.00"), ("Swile", "200.00"), ("Lydia", "200.00"),
         ("Espèces", "400.00")]

CASES = [
    # (case, payments, settings when posted, settings now, {method: (posted_on, belongs_on)})
    ("unknown method mapped since", SAMPLE, _settings(), _settings({"Lydia": "512100"}),
     {"Lydia": ("471000", "512100")}),
    ("nothing changed", SAMPLE, _settings({"Lydia": "512100"}), _settings({"Lydia": "512100"}),
     {}),
    ("mapping changed from an account to another", SAMPLE, _settings({"Lydia": "512100"}),
     _settings({"Lydia": "512300"}), {"Lydia": ("512100", "512300")}),
    ("two unknown methods sharing 471000, both mapped since", TWO_UNKNOWN, _settings(),
     _settings({"Lydia": "512100", "Paylib": "512200"}),
     {"Lydia": ("471000", "512100"), "Paylib": ("471000", "512200")}),
    ("one of two unknown methods mapped since", TWO_UNKNOWN, _settings(),
     _settings({"Paylib": "512200"}), {"Paylib": ("471000", "512200")}),
    ("the other-methods account changed since", SAMPLE, _settings(),
     _settings(overrides={"other_methods": "471100"}), {"Lydia": ("471000", "471100")}),
    ("a default link overridden by a mapping since", SAMPLE, _settings(),
     _settings({"Swile": "511810"}), {"Swile": ("511800", "511810")}),
    ("the cash method: its counted amount moves", SAMPLE, _settings(),
     _settings({"Espèces": "531000"}), {"Espèces": ("530000", "531000")}),
    ("equal amounts: the method matched by name keeps its account", EQUAL, _settings(),
     _settings({"Lydia": "511800"}), {"Lydia": ("471000", "511800")}),
]


@pytest.mark.parametrize(("payments", "then", "now", "moves"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_where_a_posted_entry_carries_each_method(
        payments: list[tuple[str, str]] | None, then: ClientSettings, now: ClientSettings,
        moves: dict[str, tuple[str, str]]) -> None:
    closure = _closure(payments)
    placed = placements(closure, now, _posted(closure, then))
    assert placed is not None
    assert {p.method: (p.posted_on, p.belongs_on) for p in placed if p.moves} == moves
    amounts = {p.method: p.amount for p in placed}
    # every method with an amount is placed, the cash method at its counted amount
    assert amounts == {p.method: p.amount if p.method != "Espèces" else Decimal("398.00")
                       for p in closure.payments}
    # once posted again with today's settings, nothing moves any more
    again = placements(closure, now, _posted(closure, now))
    assert again is not None and not any(p.moves for p in again)


def test_the_rule_is_todays_and_a_moved_method_says_where_it_goes() -> None:
    closure = _closure()
    placed = placements(closure, _settings({"Lydia": "512100"}), _posted(closure, _settings()))
    assert placed is not None
    [lydia] = [p for p in placed if p.method == "Lydia"]
    assert lydia == Placement("Lydia", Decimal("30.00"), "471000", "512100", MatchRule.EXACT)
    assert lydia.moves


def test_an_entry_another_setting_changed_is_not_explained() -> None:
    closure = _closure()
    posted = _posted(closure, _settings(overrides={"tips": "467510"}))
    assert placements(closure, _settings({"Lydia": "512100"}), posted) is None


def test_an_entry_of_another_closure_is_not_explained() -> None:
    posted_other_amounts = _posted(_closure(EQUAL), _settings())
    assert placements(_closure(), _settings(), posted_other_amounts) is None


def test_a_search_too_long_gives_up_rather_than_guess(monkeypatch: pytest.MonkeyPatch) -> None:
    closure = _closure(TWO_UNKNOWN)
    posted = _posted(closure, _settings())
    monkeypatch.setattr(placement, "SEARCH_STEPS", 2)
    assert placements(closure, _settings({"Lydia": "512100", "Paylib": "512200"}),
                      posted) is None

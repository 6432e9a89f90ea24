"""Every sample of the contract gives the outcome its README states; the worked example gives
exactly its entry (accounting-rules.md)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from samples import FIXTURES, SAMPLES, encode, sample_bytes, sample_document

from toporder_sync.core.errors import Category
from toporder_sync.core.model import ClientSettings
from toporder_sync.core.pipeline import process

PETIT_ZINC = "tpo_demo_petit_zinc"


def run(name: str, settings: ClientSettings | None = None):
    return process(
        sample_bytes(name),
        name,
        settings or ClientSettings("petit-zinc"),
        integration_id=PETIT_ZINC,
    )


def totals(outcome) -> dict[str, tuple[Decimal, Decimal]]:
    return {line.account: (line.debit, line.credit) for line in outcome.entry.lines}


D = Decimal
WORKED_EXAMPLE = {
    "511500": (D("925.00"), D("0.00")),
    "511800": (D("200.00"), D("0.00")),
    "530000": (D("398.00"), D("0.00")),
    "658000": (D("2.00"), D("0.00")),
    "706100": (D("0.00"), D("1000.00")),
    "706200": (D("0.00"), D("300.00")),
    "445712": (D("0.00"), D("100.00")),
    "445711": (D("0.00"), D("60.00")),
    "419100": (D("0.00"), D("50.00")),
    "467500": (D("0.00"), D("15.00")),
}


def test_worked_example_gives_exactly_its_entry() -> None:
    outcome = run("valid-metropole.json")
    assert outcome.errors == () and outcome.warnings == ()
    entry = outcome.entry
    assert totals(outcome) == WORKED_EXAMPLE
    assert len(entry.lines) == len(WORKED_EXAMPLE)
    assert entry.total_debit == entry.total_credit == D("1525.00")
    assert (entry.journal, entry.piece_ref, str(entry.date)) == ("VT", "Z412", "2026-11-27")
    assert entry.label == "Clôture Z412 du 2026-11-27 - Le Petit Zinc"
    assert all(type(line.debit) is Decimal and type(line.credit) is Decimal for line in entry.lines)


def test_unknown_method_goes_to_471000_with_a_warning_naming_it() -> None:
    outcome = run("valid-unknown-method.json")
    assert outcome.category is None
    assert totals(outcome)["471000"] == (D("30.00"), D("0.00"))
    assert outcome.entry.total_debit == D("1525.00")
    [warning] = outcome.warnings
    assert warning.category is Category.WARNING and "'Lydia'" in warning.message


def test_unbalanced_closure_is_a_pos_error_naming_both_sides() -> None:
    outcome = run("invalid-unbalanced.json")
    assert outcome.entry is None and outcome.category is Category.POS
    [error] = outcome.errors
    assert error.rule == "debit_equals_credit"
    assert "debit 1,520.00 ≠ credit 1,525.00" in error.message


def test_wrong_vat_rate_is_a_pos_error_naming_the_rate() -> None:
    outcome = run("invalid-vat-rate.json")
    assert outcome.entry is None and outcome.category is Category.POS
    [error] = outcome.errors
    assert error.rule == "vat_rate_in_force" and error.field == "sales[1].vat_rate"
    assert "19.6 %" in error.message


def test_explicit_mapping_and_override_change_the_accounts() -> None:
    settings = ClientSettings(
        "petit-zinc", account_overrides={"tips": "467800"}, mappings={"Swile": "511810"}
    )
    got = totals(run("valid-metropole.json", settings))
    assert got["511810"] == (D("200.00"), D("0.00")) and "511800" not in got
    assert got["467800"] == (D("0.00"), D("15.00")) and "467500" not in got


def test_closure_of_another_client_is_refused() -> None:
    outcome = process(
        sample_bytes("valid-metropole.json"),
        "x",
        ClientSettings("other"),
        integration_id="tpo_someone_else",
    )
    assert outcome.entry is None and outcome.errors[0].rule == "integration_id"


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="shared/spec is not beside the repo")
def test_fixture_copies_equal_the_contract() -> None:
    for path in SAMPLES.glob("*.json"):
        assert (FIXTURES / path.name).read_bytes() == path.read_bytes(), path.name


def test_a_day_whose_entry_lines_exceed_what_an_amount_may_be_is_a_pos_error() -> None:
    # Each amount below 10^12 euros, as the format wants; two payment methods on one account
    # and gift cards as big as the sales add up to an entry line of twice that.
    top = "999999999999.99"
    document = {**sample_document("valid-metropole.json"),
                "sales": [{"vat_rate": "20", "net": "833333333333.33",
                           "vat": "166666666666.66", "gross": top}],
                "payments": [{"method": "Swile", "amount": top},
                             {"method": "Edenred", "amount": top}],
                "tips": [], "gift_cards": {"sold": top}}
    document.pop("cash_count")
    document["closure"]["grand_total"] = {"period": top, "perpetual": top}
    outcome = process(encode(document), "trillions.json", ClientSettings("petit-zinc"),
                      integration_id=PETIT_ZINC)
    assert outcome.entry is None and outcome.category is Category.POS
    assert [(f.rule, f.field) for f in outcome.errors] == [("amount_range", "closure")]
    assert "1,999,999,999,999.98 on account 511800" in outcome.errors[0].message

"""Properties over generated valid closures (Hypothesis).

* every valid closure gives a balanced entry whose per-account totals equal the closure's,
  recomputed here independently from the accounting rules' tables;
* posting it twice changes nothing in the ledger.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import closures

from toporder_sync import service
from toporder_sync.core.accounts import RATES_BY_VALUE
from toporder_sync.core.mapping import default_account
from toporder_sync.core.model import ClientSettings, Territory
from toporder_sync.core.pipeline import process
from toporder_sync.ledger import clients, journal
from toporder_sync.ledger.db import make_engine, session_scope, upgrade
from toporder_sync.simulator import dumps

ZERO = Decimal("0.00")


def expected_balances(document: dict[str, Any]) -> dict[str, Decimal]:
    """Debit − credit per account, straight from accounting-rules.md's tables."""
    balance: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for table, sign in (("sales", -1), ("refunds", 1)):
        for line in document.get(table, []):
            rate = RATES_BY_VALUE[Decimal(line["vat_rate"])]
            balance[rate.revenue] += sign * Decimal(line["net"])
            balance[rate.vat] += sign * Decimal(line["vat"])
    balance["419100"] -= Decimal(document.get("gift_cards", {}).get("sold", "0"))
    balance["467500"] -= sum((Decimal(t["amount"]) for t in document.get("tips", [])), ZERO)
    cash = document.get("cash_count")
    for payment in document["payments"]:
        account = default_account(payment["method"]) or "471000"
        amount = Decimal(payment["amount"])
        if cash and payment["method"] == cash["method"]:
            amount = Decimal(cash["counted"])
            gap = Decimal(cash["expected"]) - amount
            balance["658000" if gap > 0 else "758000"] += gap
        balance[account] += amount
    return {account: amount for account, amount in balance.items() if amount != ZERO}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(list(Territory)).flatmap(
    lambda territory: st.tuples(st.just(territory), closures(territory))))
def test_valid_closures_give_balanced_entries_with_the_closures_totals(
    drawn: tuple[Territory, dict[str, Any]],
) -> None:
    territory, document = drawn
    outcome = process(dumps(document), "drawn.json", ClientSettings("c", territory=territory),
                      integration_id=document["integration_id"])
    assert outcome.errors == (), outcome.errors
    entry = outcome.entry
    assert entry is not None and entry.is_balanced
    got: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for line in entry.lines:
        assert (line.debit == ZERO) != (line.credit == ZERO)
        assert line.debit >= 0 and line.credit >= 0
        got[line.account] += line.debit - line.credit
    assert {a: v for a, v in got.items() if v != ZERO} == expected_balances(document)


NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(closures(Territory.METROPOLE))
def test_posting_twice_changes_nothing(tmp_path: Path, document: dict[str, Any]) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    upgrade(engine)
    with session_scope(engine) as session:
        count = len(clients.list_clients(session))
        client = clients.activate_client(session, f"c{count}", name="c",
                                         activated_on=date(2020, 1, 1), now=NOW)
    document = {**document, "integration_id": client.integration_id}
    raw = dumps(document)
    received = service.receive(engine, raw, "drawn.json", now=NOW)
    outcome = process(raw, "drawn.json", ClientSettings(client.client_id),
                      integration_id=client.integration_id)
    assert outcome.entry is not None
    if not outcome.entry.lines:
        return  # an idle day: nothing to post (the flow records it as "empty")
    results = [service.post(engine, client.client_id, received.business_date,
                            closure_id=received.closure_id, entry=outcome.entry,
                            matches=outcome.matches, warnings=outcome.warnings, now=NOW)
               for _ in range(2)]
    assert [r.status for r in results] == ["posted", "unchanged"]
    again = service.receive(engine, raw, "drawn.json", now=NOW)
    assert not again.created and again.closure_id == received.closure_id
    with session_scope(engine) as session:
        entries = journal.entries_between(session, client.client_id,
                                          received.business_date, received.business_date)
    assert len(entries) == 1 and entries[0].entry == outcome.entry
    engine.dispose()

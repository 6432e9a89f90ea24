"""A verdict for every stored closure: a run that fails unexpectedly records the day ``error``.

Before, such a day stayed ``received`` after its run: no state, no event, nothing in
``status --date``. Now the day carries the error's type and message for the data team, raises
an alert once (never a notification to Toporder: the closure is not at fault), appears in the
fleet's counts, and a rerun after the fix posts it and resolves the alert. On both backends.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from reliability import support
from sqlalchemy import Engine, select

from toporder_sync import day, outbox
from toporder_sync.cli import fleet_counts
from toporder_sync.core import pipeline
from toporder_sync.core.errors import Category, internal_error
from toporder_sync.ledger import clients, days
from toporder_sync.ledger.db import session_scope
from toporder_sync.ledger.tables import ClientDayRow
from toporder_sync.outcome import Outcome

DAY = date(2026, 11, 20)


def _broken(message: str) -> day.Assess:
    def assess(*_args: Any, **_kwargs: Any) -> pipeline.Assessment:
        raise KeyError(message)
    return assess  # type: ignore[return-value]


def _run(engine: Engine, client: clients.ClientRecord, run_id: str,
         assess: day.Assess = pipeline.assess) -> day.DayResult:
    return day.run_day(engine, client, DAY, source=support.InboxSource(engine), run_id=run_id,
                       now=lambda: support.NOW, assess=assess)


def _day_row(engine: Engine, client_id: str) -> ClientDayRow:
    with session_scope(engine) as session:
        row = session.scalars(select(ClientDayRow).where(
            ClientDayRow.client_id == client_id, ClientDayRow.business_date == DAY)).one()
        session.expunge(row)
        return row


def test_an_unexpected_error_records_the_day_once_and_a_fixed_rerun_resolves_it(
        engine: Engine) -> None:
    client = support.activate(engine, "bug")
    support.receive(engine, support.closure(client, DAY))

    failed = _run(engine, client, "run-1", _broken("a bug"))
    assert failed.outcome is Outcome.UNEXPECTED_ERROR and failed.category is Category.INTERNAL
    assert isinstance(failed.error, KeyError)
    assert failed.alert is not None and failed.alert.change == "raised"
    row = _day_row(engine, "bug")
    assert (row.state, row.claimed_by, row.error_category) == ("error", None, None)
    assert [(m["rule"], m["field"], m["message"]) for m in row.messages] == [
        ("internal_error", "run", "KeyError: 'a bug'")]
    with session_scope(engine) as session:
        assert outbox.list_messages(session, client_id="bug") == []
        counts = fleet_counts(days.fleet_status(session, DAY))
    assert counts["error"] == 1 and counts["received"] == 0

    again = _run(engine, client, "run-2", _broken("a bug"))
    assert again.alert is not None and again.alert.change == "repeated"

    fixed = _run(engine, client, "run-3")
    assert fixed.outcome is Outcome.POSTED, fixed
    assert fixed.alert is not None and fixed.alert.change == "resolved"
    assert fixed.alert.alert.outcome == Outcome.UNEXPECTED_ERROR.name
    assert _day_row(engine, "bug").state == "posted"


def test_an_error_that_cannot_even_be_recorded_is_raised_and_frees_the_day(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    client = support.activate(engine, "worse")
    support.receive(engine, support.closure(client, DAY))

    def no_record(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("the ledger refused the record too")

    monkeypatch.setattr(day.service, "flag", no_record)
    with pytest.raises(KeyError, match="a bug"):
        _run(engine, client, "run-1", _broken("a bug"))
    row = _day_row(engine, "worse")
    assert (row.state, row.claimed_by) == ("received", None)


@pytest.mark.parametrize(("error", "message"), [
    (ValueError("nul\x00here"), "ValueError: nul\\x00here"),
    (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
     "UnicodeEncodeError: 'utf-8' codec can't encode character '\\ud800' in position 0: "
     "surrogates not allowed"),
    (ValueError("\ud800 lone"), "ValueError: \\ud800 lone"),
    (RuntimeError("x" * 2000), "RuntimeError: " + "x" * 485 + "…"),
])
def test_an_internal_error_finding_is_text_any_database_stores(error: Exception,
                                                               message: str) -> None:
    finding = internal_error(error)
    assert finding.message == message
    assert "\x00" not in finding.message and len(finding.message) <= 500
    finding.message.encode("utf-8")  # no lone surrogate left

"""Which posted days a mapping moves (``reclassify.survey``, ``on_other_methods``), on SQLite and
PostgreSQL: days posted through the client-day's story (``day.run_day``) on a real ledger.
The reruns themselves, through the flow and the command line, are in
``tests/e2e/test_reclassify.py``."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

from click.testing import CliRunner, Result
from samples import unknown_method_day
from sqlalchemy import Engine, update

from toporder_sync import day, reclassify, service
from toporder_sync.cli import main
from toporder_sync.ledger import clients, journal
from toporder_sync.ledger.db import session_scope
from toporder_sync.ledger.tables import ClientRow
from toporder_sync.outcome import EXIT_FLAGGED, EXIT_REFUSED, EXIT_USAGE, Outcome
from toporder_sync.sources import InboxSource

NOW = datetime(2026, 11, 28, 5, 30, tzinfo=UTC)
DAYS = (date(2026, 11, 24), date(2026, 11, 25), date(2026, 11, 26))


def _client(engine: Engine) -> clients.ClientRecord:
    with session_scope(engine) as session:
        return clients.activate_client(session, "petit-zinc", name="Le Petit Zinc",
                                       activated_on=date(2026, 11, 1), now=NOW)


def _run(engine: Engine, client: clients.ClientRecord, business_date: date,
         run_id: str) -> day.DayResult:
    with session_scope(engine) as session:
        client = clients.get_client(session, client.client_id)
    return day.run_day(engine, client, business_date, source=InboxSource(engine),
                       run_id=run_id, now=lambda: NOW)


def _three_days_on_471000(engine: Engine) -> clients.ClientRecord:
    client = _client(engine)
    for business_date in DAYS:
        service.receive(engine, unknown_method_day(client.integration_id, business_date.day),
                        "test", now=NOW)
        result = _run(engine, client, business_date, f"first-{business_date}")
        assert result.outcome is Outcome.POSTED_WITH_WARNINGS, result
    return client


def _map_lydia(engine: Engine, account: str = "512100") -> None:
    with session_scope(engine) as session:
        clients.set_mapping(session, "petit-zinc", "Lydia", account, now=NOW)


def test_the_days_carrying_a_newly_mapped_method_elsewhere_are_found_oldest_first(
        engine: Engine) -> None:
    client = _three_days_on_471000(engine)
    assert reclassify.survey(engine, "petit-zinc", reclassify.method_moves("Lydia")).due == ()
    on_other = reclassify.on_other_methods(engine, "petit-zinc")
    assert (on_other.account, dict(on_other.days), on_other.unexplained) == (
        "471000", {"Lydia": 3}, 0)

    _map_lydia(engine)
    found = reclassify.survey(engine, "petit-zinc", reclassify.method_moves("Lydia"))
    assert [d.business_date for d in found.due] == list(DAYS)
    assert [d.entry_number for d in found.due] == [1, 2, 3]
    assert {(p.method, p.amount, p.posted_on, p.belongs_on)
            for d in found.due for p in d.moves} == {("Lydia", Decimal("30.00"), "471000",
                                                      "512100")}
    assert found.untouched == ()
    assert reclassify.describe(found.due[0].moves) == "'Lydia' 30.00 from 471000 to 512100"
    # the live entries have not moved: still counted on 471000
    assert dict(reclassify.on_other_methods(engine, "petit-zinc").days) == {"Lydia": 3}
    assert reclassify.survey(engine, "petit-zinc", reclassify.method_moves("Swile")).due == ()

    for business_date in DAYS:  # the normal path: a reversal and a new entry per day
        result = _run(engine, client, business_date, f"again-{business_date}")
        assert result.posted is not None and result.posted.status == "replaced"
    assert reclassify.survey(engine, "petit-zinc", reclassify.method_moves("Lydia")).due == ()
    assert dict(reclassify.on_other_methods(engine, "petit-zinc").days) == {}

    _map_lydia(engine, "512300")  # mapped again elsewhere: the days move from 512100
    found = reclassify.survey(engine, "petit-zinc", reclassify.method_moves("Lydia"))
    assert {(p.posted_on, p.belongs_on) for d in found.due for p in d.moves} == {
        ("512100", "512300")}
    assert [d.entry_number for d in found.due] == [5, 7, 9]


def test_a_changed_other_methods_account_finds_the_unrecognised_methods(engine: Engine) -> None:
    _three_days_on_471000(engine)
    with session_scope(engine) as session:
        clients.set_account_override(session, "petit-zinc", "other_methods", "471100")
    found = reclassify.survey(engine, "petit-zinc", reclassify.unrecognised_moves)
    assert {(d.business_date, p.method, p.posted_on, p.belongs_on)
            for d in found.due for p in d.moves} == {
        (business_date, "Lydia", "471000", "471100") for business_date in DAYS}
    on_other = reclassify.on_other_methods(engine, "petit-zinc")
    assert (on_other.account, dict(on_other.days)) == ("471100", {})


def test_days_a_reclassification_must_not_touch_are_said_so(engine: Engine) -> None:
    client = _three_days_on_471000(engine)
    first, second, third = DAYS
    # the second day's latest closure is flagged (its payments no longer add up)
    document = json.loads(unknown_method_day(client.integration_id, second.day))
    document["payments"][2]["amount"] = "31.00"
    service.receive(engine, json.dumps(document).encode(), "test", now=NOW)
    assert _run(engine, client, second, "flagged").outcome is Outcome.POS_DATA_ERROR
    # the third day's new closure has not been run yet
    document = json.loads(unknown_method_day(client.integration_id, third.day))
    document["establishment"]["name"] = "Au Petit Zinc"
    service.receive(engine, json.dumps(document).encode(), "test", now=NOW)
    # the first day is now before the client's activation (its date moved since)
    with session_scope(engine) as session:
        session.execute(update(ClientRow).where(ClientRow.client_id == "petit-zinc")
                        .values(activated_on=second))
    _map_lydia(engine)

    found = reclassify.survey(engine, "petit-zinc", reclassify.method_moves("Lydia"))
    assert found.due == ()
    assert [(u.business_date, u.reason, u.exit_code) for u in found.untouched] == [
        (first, "before the client's activation on 2026-11-25", EXIT_REFUSED),
        (second, "its latest closure is flagged: once it is corrected, its run posts it",
         EXIT_FLAGGED),
        (third, "its latest closure is not the one posted (the day is received): its own run "
                "decides", EXIT_FLAGGED),
    ]
    assert all(u.moves for u in found.untouched)
    assert (found.concerned, found.unexplained) == (3, 0)
    with session_scope(engine) as session:  # the survey wrote nothing
        assert len(journal.entries_between(session, "petit-zinc", first, third)) == 3


def test_an_entry_its_closure_no_longer_explains_is_left_and_not_counted(
        engine: Engine) -> None:
    _three_days_on_471000(engine)
    with session_scope(engine) as session:
        clients.set_account_override(session, "petit-zinc", "tips", "467510")
    _map_lydia(engine)
    found = reclassify.survey(engine, "petit-zinc", reclassify.method_moves("Lydia"))
    assert found.due == ()
    assert [u.business_date for u in found.untouched] == list(DAYS)
    assert all(u.moves == () and u.exit_code == EXIT_FLAGGED for u in found.untouched)
    assert (found.concerned, found.unexplained) == (0, 3)
    told = _invoke(engine, "mapping", "set", "petit-zinc", "Lydia", "512100")
    assert told.exit_code == 0, told.output
    assert told.output.splitlines()[1:] == [
        "petit-zinc: no posted day carries 'Lydia' on another account",
        "petit-zinc: 3 posted day(s) not counted: their entry is not explained by their "
        "closure under today's settings (another setting changed since); `rerun` posts them "
        "with today's"]
    assert found.untouched[0].reason.startswith("its entry is not explained by its closure")
    on_other = reclassify.on_other_methods(engine, "petit-zinc")
    assert (dict(on_other.days), on_other.unexplained) == ({}, 3)


def _invoke(engine: Engine, *args: str) -> Result:
    url = engine.url.render_as_string(hide_password=False)
    return CliRunner().invoke(main, list(args), env={"TOPORDER_SYNC_DATABASE_URL": url})


def test_the_commands_tell_what_a_reclassification_would_move(engine: Engine) -> None:
    _three_days_on_471000(engine)
    shown = _invoke(engine, "methods", "petit-zinc")
    assert shown.exit_code == 0, shown.output
    header, *rows = shown.output.splitlines()
    assert header.split() == ["name", "first_seen", "last_seen", "account", "rule",
                              "days_on_other_methods"]
    assert [row.split()[0::5] for row in rows if row.startswith("Lydia")] == [["Lydia", "3"]]

    refused = _invoke(engine, "clients", "set-account", "petit-zinc", "tips", "467510",
                      "--reclassify")
    assert refused.exit_code == EXIT_USAGE
    assert "--reclassify applies to other_methods only" in refused.output
    with session_scope(engine) as session:  # nothing saved
        assert clients.get_client(session, "petit-zinc").account_overrides == {}

    told = _invoke(engine, "clients", "set-account", "petit-zinc", "other_methods", "471100")
    assert told.exit_code == 0, told.output
    assert told.output.splitlines() == [
        "petit-zinc: other_methods → 471100",
        "petit-zinc: 3 posted day(s) carry a method no rule recognises on another account; to "
        "reverse and repost them on today's accounts: toporder-sync clients set-account "
        "petit-zinc other_methods 471100 --reclassify",
    ]
    other = _invoke(engine, "clients", "set-account", "petit-zinc", "tips", "467510")
    assert other.output.splitlines() == ["petit-zinc: tips → 467510"]
    unknown = _invoke(engine, "mapping", "set", "nobody", "Lydia", "512100", "--reclassify")
    assert unknown.exit_code == EXIT_REFUSED and "Traceback" not in unknown.output

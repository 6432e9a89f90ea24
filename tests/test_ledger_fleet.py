"""The ledger side of running a fleet: claims, schedules, the fleet's status, migration 0002,
and the ``status --date`` and ``rerun`` commands.

Claims are tested step by step (table-driven, fixed instants) and under a real race: two OS
processes, released together by a barrier, claim the same new client-day twenty times; the
database must give it to exactly one of them every time, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import multiprocessing
import traceback
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest
import racing
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import JSON, Engine, inspect
from sqlalchemy.exc import IntegrityError

from toporder_sync import cli, service
from toporder_sync.core.errors import (
    Category,
    ConfigurationError,
    RefusedError,
    ledger_error,
    pos_error,
    refused,
    warning,
)
from toporder_sync.core.model import Territory
from toporder_sync.ledger.claims import claim_day, release_day
from toporder_sync.ledger.clients import (
    activate_client,
    deactivate_client,
    due_clients,
    get_client,
    reactivate_client,
    schedule_slots,
    set_schedule,
)
from toporder_sync.ledger.days import FleetDay, fleet_status, record_day
from toporder_sync.ledger.db import (
    DATABASE_URL_ENV,
    alembic_config,
    make_engine,
    session_scope,
    upgrade,
)
from toporder_sync.ledger.tables import Base, ClientDayRow, DayState, UtcDateTime
from toporder_sync.outcome import EXIT_FLAGGED, EXIT_MISSING, EXIT_REFUSED, Outcome
from toporder_sync.runner import DayRun

DAY = date(2026, 11, 27)
T0 = datetime(2026, 11, 28, 5, 0, tzinfo=UTC)
LEASE = timedelta(minutes=10)
WAIT = 120


# --- claims, step by step ---------------------------------------------------------------------

# (action, run id, minutes after T0, expected result of claim / release)
Step = tuple[str, str, float, bool]

CLAIM_SCENARIOS: dict[str, list[Step]] = {
    "an unclaimed day goes to the first run": [("claim", "run-a", 0, True)],
    "a live claim keeps another run out": [
        ("claim", "run-a", 0, True),
        ("claim", "run-b", 1, False),
        ("claim", "run-b", 9.99, False),
    ],
    "the holder claims again and extends its lease": [
        ("claim", "run-a", 0, True),
        ("claim", "run-a", 8, True),
        ("claim", "run-b", 12, False),  # the lease now ends at T0 + 18 min
        ("claim", "run-b", 18.01, True),
    ],
    "a lease ending exactly now is still held": [
        ("claim", "run-a", 0, True),
        ("claim", "run-b", 10, False),
    ],
    "an expired lease is taken over, and the old holder is then out": [
        ("claim", "run-a", 0, True),
        ("claim", "run-b", 10.01, True),
        ("claim", "run-a", 11, False),
        ("release", "run-a", 11, False),
        ("claim", "run-b", 11, True),
    ],
    "a released day can be claimed by another run": [
        ("claim", "run-a", 0, True),
        ("release", "run-a", 1, True),
        ("claim", "run-b", 1, True),
    ],
    "only the holder can release": [
        ("claim", "run-a", 0, True),
        ("release", "run-b", 1, False),
        ("claim", "run-b", 2, False),
        ("release", "run-a", 2, True),
        ("release", "run-a", 2, False),
    ],
    "releasing a day never claimed does nothing": [("release", "run-a", 0, False)],
}


@pytest.mark.parametrize("steps", CLAIM_SCENARIOS.values(), ids=CLAIM_SCENARIOS.keys())
def test_claim_and_release(engine: Engine, client_id: str, steps: list[Step]) -> None:
    for number, (action, run_id, minutes, expected) in enumerate(steps):
        now = T0 + timedelta(minutes=minutes)
        with session_scope(engine) as session:
            if action == "claim":
                got = claim_day(session, client_id, DAY, run_id=run_id, now=now, lease=LEASE)
            else:
                got = release_day(session, client_id, DAY, run_id=run_id)
        assert got is expected, f"step {number}: {action} by {run_id} at +{minutes} min"


def test_a_claim_creates_the_day_as_received_and_records_holder_and_lease(
    engine: Engine, client_id: str
) -> None:
    assert service.claim(engine, client_id, DAY, run_id="run-a", now=T0, lease=LEASE)
    with session_scope(engine) as session:
        day = session.get(ClientDayRow, (client_id, DAY))
        assert day is not None
        assert (day.state, day.attempts, day.updated_at) == ("received", 0, T0)
        assert (day.claimed_by, day.claimed_until) == ("run-a", T0 + LEASE)
    service.release(engine, client_id, DAY, run_id="run-a")
    with session_scope(engine) as session:
        day = session.get(ClientDayRow, (client_id, DAY))
        assert day is not None
        assert (day.claimed_by, day.claimed_until) == (None, None)


def test_a_claim_leaves_a_recorded_day_as_it_is(engine: Engine, client_id: str) -> None:
    with session_scope(engine) as session:
        record_day(session, client_id, DAY, state="flagged", error_category=Category.POS,
                   messages=[pos_error("r", "f", "bad")], warnings=[], closure_id=None,
                   flow_run_id="run-0", now=T0)
    assert service.claim(engine, client_id, DAY, run_id="run-a", now=T0, lease=LEASE)
    with session_scope(engine) as session:
        day = session.get(ClientDayRow, (client_id, DAY))
        assert day is not None
        assert (day.state, day.error_category, day.attempts) == ("flagged", "pos", 1)


def test_claims_of_an_unknown_client_or_without_a_lease_are_refused(
    engine: Engine, client_id: str
) -> None:
    with pytest.raises(RefusedError, match="unknown client"):
        service.claim(engine, "nobody", DAY, run_id="run-a", now=T0, lease=LEASE)
    with pytest.raises(ValueError, match="lease"):
        service.claim(engine, client_id, DAY, run_id="run-a", now=T0, lease=timedelta(0))
    with pytest.raises(ValueError, match="run_id"):
        service.claim(engine, client_id, DAY, run_id="", now=T0, lease=LEASE)


# --- claims, raced by two processes ----------------------------------------------------------

RACE_ROUNDS = 20


def _claim_in_a_process(url: str, client_id: str, run_id: str, barrier: Barrier,
                        results: Queue[Any]) -> None:
    engine = make_engine(url)
    try:
        for round_number in range(RACE_ROUNDS):
            day = DAY - timedelta(days=round_number)
            barrier.wait(WAIT)
            won = service.claim(engine, client_id, day, run_id=run_id, now=T0, lease=LEASE)
            results.put(("claim", day, run_id, won))
    except BaseException:
        barrier.abort()  # release the other process, which then reports BrokenBarrierError
        results.put(("error", traceback.format_exc()))
    finally:
        engine.dispose()
        results.put(("done",))


@pytest.mark.timeout(600)
def test_two_processes_claiming_the_same_day_get_it_exactly_once(
    ledger_url: str, engine: Engine, client_id: str
) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results: Queue[Any] = context.Queue()
    processes = [
        context.Process(target=_claim_in_a_process,
                        args=(ledger_url, client_id, run_id, barrier, results))
        for run_id in ("run-a", "run-b")
    ]
    for process in processes:
        process.start()
    by_day: dict[date, dict[str, bool]] = {}
    for day, run_id, won in racing.reports(results, processes, wait=WAIT):
        by_day.setdefault(day, {})[run_id] = won
    assert len(by_day) == RACE_ROUNDS
    with session_scope(engine) as session:
        for day, outcome in by_day.items():
            assert sorted(outcome.values()) == [False, True], (day, outcome)
            (winner,) = [run_id for run_id, won in outcome.items() if won]
            row = session.get(ClientDayRow, (client_id, day))
            assert row is not None
            assert row.claimed_by == winner, day


# --- schedules and the fleet -------------------------------------------------------------------

FLEET: Sequence[tuple[str, date, str, int]] = (
    # client, activated on, timezone, run hour
    ("a-posted", date(2026, 11, 1), "Europe/Paris", 6),
    ("b-flagged-pos", date(2026, 11, 1), "Europe/Paris", 6),
    ("c-flagged-ledger", date(2026, 11, 1), "Europe/Paris", 7),
    ("d-refused", date(2026, 11, 1), "America/Martinique", 6),
    ("e-missing", date(2026, 11, 1), "America/Martinique", 6),
    ("f-waiting", date(2026, 11, 1), "Indian/Reunion", 5),
    ("g-not-run", DAY, "Europe/Paris", 6),
    ("h-later", DAY + timedelta(days=1), "Europe/Paris", 6),
    ("i-inactive", date(2026, 11, 1), "Pacific/Noumea", 4),
)

# client: (state, category, messages, warnings)
RECORDED: dict[str, tuple[DayState, Category | None, list[Any], list[Any]]] = {
    "a-posted": ("posted", None, [], [warning("w", "f", "rounded")]),
    "b-flagged-pos": ("flagged", Category.POS, [pos_error("r", "f", "totals differ")], []),
    "c-flagged-ledger": ("flagged", Category.LEDGER, [ledger_error("m", "f", "unmapped")], []),
    "d-refused": ("refused", None, [refused("refused", "business_date", "not over")], []),
    "e-missing": ("missing", Category.POS, [pos_error("missing", "closure", "none")], []),
    "f-waiting": ("waiting", None, [], []),
    "i-inactive": ("posted", None, [], []),
}


def seed_fleet(engine: Engine) -> Engine:
    """The clients of FLEET, their days of RECORDED, and one client deactivated."""
    with session_scope(engine) as session:
        for client, activated_on, timezone, hour in FLEET:
            activate_client(session, client, name=client.title(), activated_on=activated_on,
                            timezone=timezone, run_hour=hour, now=T0)
        for client, (state, category, messages, warnings) in RECORDED.items():
            record_day(session, client, DAY, state=state, error_category=category,
                       messages=messages, warnings=warnings, closure_id=None,
                       flow_run_id=f"run-{client}", now=T0)
        deactivate_client(session, "i-inactive")
    return engine


@pytest.fixture
def fleet(engine: Engine) -> Engine:
    return seed_fleet(engine)


def test_due_clients_are_the_active_ones_of_a_timezone_and_hour(fleet: Engine) -> None:
    with session_scope(fleet) as session:
        due = {
            (tz, hour): [c.client_id for c in due_clients(session, timezone=tz, hour=hour)]
            for tz, hour in [("Europe/Paris", 6), ("Europe/Paris", 7),
                             ("America/Martinique", 6), ("Pacific/Noumea", 4),
                             ("Europe/Paris", 5)]
        }
    assert due == {
        ("Europe/Paris", 6): ["a-posted", "b-flagged-pos", "g-not-run", "h-later"],
        ("Europe/Paris", 7): ["c-flagged-ledger"],
        ("America/Martinique", 6): ["d-refused", "e-missing"],
        ("Pacific/Noumea", 4): [],
        ("Europe/Paris", 5): [],
    }


def test_schedule_slots_are_the_distinct_timezone_hours_of_active_clients(fleet: Engine) -> None:
    with session_scope(fleet) as session:
        assert schedule_slots(session) == [
            ("America/Martinique", 6),
            ("Europe/Paris", 6),
            ("Europe/Paris", 7),
            ("Indian/Reunion", 5),
        ]
        reactivate_client(session, "i-inactive")
        assert ("Pacific/Noumea", 4) in schedule_slots(session)


def test_fleet_status_has_one_row_per_active_client_activated_by_that_day(fleet: Engine) -> None:
    with session_scope(fleet) as session:
        status = fleet_status(session, DAY)
    assert [(f.client_id, f.state, f.error_category) for f in status] == [
        ("a-posted", "posted", None),
        ("b-flagged-pos", "flagged", Category.POS),
        ("c-flagged-ledger", "flagged", Category.LEDGER),
        ("d-refused", "refused", None),
        ("e-missing", "missing", Category.POS),
        ("f-waiting", "waiting", None),
        ("g-not-run", "not_run", None),
    ]
    assert status[0] == FleetDay("a-posted", Territory.METROPOLE, "posted", None, (),
                                 (warning("w", "f", "rounded"),), attempts=1,
                                 flow_run_id="run-a-posted")
    assert status[1].messages == (pos_error("r", "f", "totals differ"),)
    assert status[-1] == FleetDay("g-not-run", Territory.METROPOLE, "not_run", None, (), ())


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"timezone": "Paris"}, "timezone"),
        ({"run_hour": 24}, "run_hour"),
        ({"run_hour": -1}, "run_hour"),
        ({"deadline_hour": 24}, "deadline_hour"),
        ({"run_hour": 7, "deadline_hour": 99}, "deadline_hour"),
    ],
)
def test_bad_schedules_are_configuration_errors_naming_the_field_and_change_nothing(
    engine: Engine, client_id: str, changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigurationError, match=field), session_scope(engine) as session:
        set_schedule(session, client_id, **changes)
    with session_scope(engine) as session:
        client = get_client(session, client_id)
    assert (client.timezone, client.run_hour, client.deadline_hour) == ("Europe/Paris", 6, 12)


def test_set_schedule_changes_only_what_is_given(engine: Engine, client_id: str) -> None:
    with session_scope(engine) as session:
        changed = set_schedule(session, client_id, run_hour=5)
    assert (changed.timezone, changed.run_hour, changed.deadline_hour) == ("Europe/Paris", 5, 12)
    with session_scope(engine) as session:
        set_schedule(session, client_id, timezone="Indian/Reunion", deadline_hour=15)
    with session_scope(engine) as session:
        client = get_client(session, client_id)
    assert (client.timezone, client.run_hour, client.deadline_hour) == ("Indian/Reunion", 5, 15)
    with pytest.raises(RefusedError, match="unknown client"), session_scope(engine) as session:
        set_schedule(session, "nobody", run_hour=5)


def test_deactivating_and_reactivating_a_client(engine: Engine, client_id: str) -> None:
    with session_scope(engine) as session:
        assert deactivate_client(session, client_id).active is False
    with session_scope(engine) as session:
        assert get_client(session, client_id).active is False
        assert schedule_slots(session) == []
        assert reactivate_client(session, client_id).active is True
    with session_scope(engine) as session:
        assert schedule_slots(session) == [("Europe/Paris", 6)]


# --- migration 0002 ---------------------------------------------------------------------------

CLIENTS_0001 = sa.table(
    "clients", *(sa.column(name) for name in (
        "client_id", "name", "integration_id", "territory", "timezone", "run_hour",
        "active")),
    sa.column("activated_on", sa.Date()),
    sa.column("account_overrides", JSON()), sa.column("created_at", UtcDateTime()),
)
DAYS_0001 = sa.table(
    "client_days", *(sa.column(name) for name in (
        "client_id", "state", "error_category", "attempts")),
    sa.column("business_date", sa.Date()),
    sa.column("messages", JSON()), sa.column("warnings", JSON()),
    sa.column("updated_at", UtcDateTime()),
)


def _day_values(business_date: date, state: str, error_category: str | None = None
                ) -> dict[str, Any]:
    return {"client_id": "petit-zinc", "business_date": business_date, "state": state,
            "error_category": error_category, "attempts": 1, "messages": [], "warnings": [],
            "updated_at": T0}


def _columns(engine: Engine, table: str) -> set[str]:
    with engine.connect() as connection:
        return {c["name"] for c in inspect(connection).get_columns(table)}


def _matches_the_tables_module(engine: Engine) -> None:
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_migration_0002_upgrades_downgrades_and_upgrades_again_keeping_the_data(
    ledger_url: str,
) -> None:
    config = alembic_config(ledger_url)
    engine = make_engine(ledger_url)
    command.upgrade(config, "0001")
    with engine.begin() as connection:
        connection.execute(CLIENTS_0001.insert().values(
            client_id="petit-zinc", name="Le Petit Zinc", integration_id="tpo_x",
            activated_on=date(2026, 11, 1), territory="metropole", timezone="Europe/Paris",
            run_hour=6, active=True, account_overrides={}, created_at=T0))
        connection.execute(DAYS_0001.insert().values(_day_values(DAY, "flagged", "pos")))

    upgrade(engine)
    _matches_the_tables_module(engine)
    with session_scope(engine) as session:
        assert get_client(session, "petit-zinc").deadline_hour == 12
        assert [(f.state, f.error_category) for f in fleet_status(session, DAY)] == [
            ("flagged", Category.POS)]
        record_day(session, "petit-zinc", DAY + timedelta(days=1), state="waiting",
                   error_category=None, messages=[], warnings=[], closure_id=None,
                   flow_run_id=None, now=T0)
        assert claim_day(session, "petit-zinc", DAY, run_id="run-a", now=T0, lease=LEASE)

    command.downgrade(config, "0001")
    assert "deadline_hour" not in _columns(engine, "clients")
    assert not {"claimed_by", "claimed_until"} & _columns(engine, "client_days")
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(DAYS_0001.c.business_date, DAYS_0001.c.state, DAYS_0001.c.error_category)
            .order_by(DAYS_0001.c.business_date)
        ).all()
    assert [tuple(row) for row in rows] == [
        (DAY, "flagged", "pos"),
        (DAY + timedelta(days=1), "received", None),  # waiting has no 0001 equivalent
    ]
    # The copied table keeps every constraint: the 0001 states, the categories, the client key.
    for values in (_day_values(DAY + timedelta(days=2), "waiting"),
                   _day_values(DAY + timedelta(days=2), "flagged", "someone"),
                   {**_day_values(DAY + timedelta(days=2), "posted"), "client_id": "nobody"}):
        with pytest.raises(IntegrityError), engine.begin() as connection:
            connection.execute(DAYS_0001.insert().values(values))

    upgrade(engine)
    _matches_the_tables_module(engine)
    with session_scope(engine) as session:
        assert get_client(session, "petit-zinc").deadline_hour == 12
        assert claim_day(session, "petit-zinc", DAY, run_id="run-b", now=T0, lease=LEASE)
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(
            DAYS_0001.insert().values(_day_values(DAY + timedelta(days=2), "flagged", "someone"))
        )
    engine.dispose()


# --- the command line -------------------------------------------------------------------------


@pytest.fixture
def cli_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """The fleet above in a SQLite ledger that the command line uses."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv(DATABASE_URL_ENV, url)
    engine = make_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def cli_fleet(cli_ledger: Engine) -> Engine:
    return seed_fleet(cli_ledger)


def test_status_of_a_date_as_json_lists_every_client_and_counts(cli_fleet: Engine) -> None:
    result = CliRunner().invoke(cli.main, ["status", "--date", DAY.isoformat(), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["business_date"] == "2026-11-27"
    assert report["counts"] == {
        "clients": 7, "posted": 1, "empty": 0, "flagged": 2, "flagged_pos": 1,
        "flagged_ledger": 1, "refused": 1, "missing": 1, "error": 0, "waiting": 1, "received": 0,
        "not_run": 1,
    }
    assert [(c["client_id"], c["state"], c["error_category"]) for c in report["clients"]] == [
        ("a-posted", "posted", None),
        ("b-flagged-pos", "flagged", "pos"),
        ("c-flagged-ledger", "flagged", "ledger"),
        ("d-refused", "refused", None),
        ("e-missing", "missing", "pos"),
        ("f-waiting", "waiting", None),
        ("g-not-run", "not_run", None),
    ]
    assert report["clients"][1]["messages"] == [pos_error("r", "f", "totals differ").as_dict()]
    assert report["clients"][0]["warnings"] == [warning("w", "f", "rounded").as_dict()]


def test_status_of_a_date_as_text_is_a_table_and_a_summary(cli_fleet: Engine) -> None:
    result = CliRunner().invoke(cli.main, ["status", "--date", DAY.isoformat()])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["client", "territory", "state", "error_category", "detail"]
    assert lines[2].split()[:4] == ["b-flagged-pos", "metropole", "flagged", "pos"]
    assert "totals differ" in lines[2]
    assert lines[-1] == (
        "2026-11-27: 7 client(s): 1 posted, 2 flagged (1 pos, 1 ledger), 1 refused, "
        "1 missing, 1 waiting, 1 not run"
    )


@pytest.mark.parametrize("arguments", [["status"], ["status", "a-posted", "--date", "2026-11-27"]])
def test_status_needs_exactly_one_of_client_and_date(cli_fleet: Engine, arguments: list[str]
                                                     ) -> None:
    result = CliRunner().invoke(cli.main, arguments)
    assert result.exit_code == 2
    assert "exactly one" in result.output


def test_status_of_one_client_is_unchanged(cli_fleet: Engine) -> None:
    result = CliRunner().invoke(cli.main, ["status", "b-flagged-pos", "--json"])
    assert result.exit_code == 0, result.output
    assert [(d["business_date"], d["state"]) for d in json.loads(result.output)] == [
        ("2026-11-27", "flagged")]


def _fake_run_days(outcomes: dict[date, Outcome], calls: list[list[tuple[str, date]]]) -> Any:
    def run_days(client_days: Sequence[tuple[str, date]], progress: Any = None) -> list[DayRun]:
        calls.append(list(client_days))
        done = []
        for client_id, day in client_days:
            outcome = outcomes.get(day, Outcome.POSTED)
            done.append(DayRun(client_id, day, outcome, f"{outcome.state_name.lower()} day"))
            if progress is not None:
                progress(done[-1])
        return done

    return run_days


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ({}, 0),
        ({date(2026, 11, 25): Outcome.NOTHING_TO_POST}, 0),
        ({date(2026, 11, 26): Outcome.POS_DATA_ERROR}, EXIT_FLAGGED),
        ({date(2026, 11, 26): Outcome.MISSING}, EXIT_MISSING),
        ({date(2026, 11, 24): Outcome.REFUSED,
          date(2026, 11, 26): Outcome.MAPPING_ERROR}, EXIT_REFUSED),
        ({date(2026, 11, 25): Outcome.MISSING,
          date(2026, 11, 26): Outcome.MAPPING_ERROR}, EXIT_FLAGGED),
    ],
)
def test_rerun_runs_each_day_in_order_and_exits_with_the_worst(
    cli_fleet: Engine, monkeypatch: pytest.MonkeyPatch,
    outcomes: dict[date, Outcome], expected: int,
) -> None:
    calls: list[list[tuple[str, date]]] = []
    monkeypatch.setattr(cli, "run_days", _fake_run_days(outcomes, calls))
    result = CliRunner().invoke(
        cli.main, ["rerun", "a-posted", "--from", "2026-11-24", "--to", "2026-11-27"]
    )
    assert result.exit_code == expected, result.output
    days = [date(2026, 11, 24) + timedelta(days=n) for n in range(4)]
    assert calls == [[("a-posted", day) for day in days]]
    printed = [line for line in result.output.splitlines() if line.startswith("a-posted 2026")]
    assert [line.split(":")[0] for line in printed] == [f"a-posted {day}" for day in days]
    for day in days:
        state_name = outcomes.get(day, Outcome.POSTED).state_name
        assert f"a-posted {day}: {state_name}: {state_name.lower()} day" in printed


def test_rerun_refuses_a_reversed_range_and_an_unknown_client(
    cli_fleet: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[tuple[str, date]]] = []
    monkeypatch.setattr(cli, "run_days", _fake_run_days({}, calls))
    reversed_range = CliRunner().invoke(
        cli.main, ["rerun", "a-posted", "--from", "2026-11-27", "--to", "2026-11-26"]
    )
    assert reversed_range.exit_code == 2
    unknown = CliRunner().invoke(
        cli.main, ["rerun", "nobody", "--from", "2026-11-26", "--to", "2026-11-27"]
    )
    assert unknown.exit_code == EXIT_REFUSED
    assert calls == []


def test_clients_schedule_commands(cli_ledger: Engine) -> None:
    runner = CliRunner()
    activated = runner.invoke(cli.main, [
        "clients", "activate", "petit-zinc", "--name", "Le Petit Zinc", "--on", "2026-11-01",
        "--run-hour", "5", "--deadline-hour", "14"])
    assert activated.exit_code == 0, activated.output
    moved = runner.invoke(cli.main, ["clients", "set-schedule", "petit-zinc", "--timezone",
                                     "Indian/Reunion", "--run-hour", "4"])
    assert moved.exit_code == 0, moved.output
    assert runner.invoke(cli.main, ["clients", "set-schedule", "petit-zinc"]).exit_code == 2
    assert runner.invoke(cli.main, ["clients", "set-schedule", "petit-zinc", "--timezone",
                                    "Paris"]).exit_code == 2
    assert runner.invoke(cli.main, ["clients", "set-schedule", "petit-zinc", "--run-hour",
                                    "24"]).exit_code == 2
    assert runner.invoke(cli.main, ["clients", "deactivate", "petit-zinc"]).exit_code == 0
    listed = runner.invoke(cli.main, ["clients", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    (client,) = json.loads(listed.output)
    assert {k: client[k] for k in ("timezone", "run_hour", "deadline_hour", "active")} == {
        "timezone": "Indian/Reunion", "run_hour": 4, "deadline_hour": 14, "active": False}
    table = runner.invoke(cli.main, ["clients", "list"]).output.splitlines()
    assert table[0].split()[-3:] == ["run_hour", "deadline_hour", "active"]
    assert table[1].split()[-3:] == ["4", "14", "no"]
    assert runner.invoke(cli.main, ["clients", "deactivate", "nobody"]).exit_code == 3

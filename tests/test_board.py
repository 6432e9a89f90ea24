"""The board of a business day, from the ledger's days: pure, no Prefect."""

from __future__ import annotations

from datetime import date

from toporder_sync import board
from toporder_sync.core.errors import Category, pos_error, warning
from toporder_sync.core.model import Territory
from toporder_sync.fleet import DayOutcome
from toporder_sync.ledger.days import Alert, FleetDay
from toporder_sync.outcome import Outcome

DAY = date(2026, 11, 27)


def url(run_id: str | None) -> str:
    return f"/runs/{run_id}" if run_id else ""


def day(client_id: str, state: str, category: Category | None = None, *, run: str = "r",
        alert: Alert | None = None, warned: bool = False) -> FleetDay:
    messages = (pos_error("balanced", "payments", "debit ≠ credit"),) if category else ()
    warnings = (warning("gap", "closure.number", "Z3 after Z1"),) if warned else ()
    return FleetDay(client_id, Territory.METROPOLE, state, category, messages,  # type: ignore[arg-type]
                    warnings, 1, run, alert)


def test_the_board_lists_who_must_act_then_what_was_resolved_and_counts_the_rest() -> None:
    days = [
        day("a-posted", "posted", warned=True),
        day("b-pos", "flagged", Category.POS, run="rerun-b",
            alert=Alert("k", "POS_DATA_ERROR", "red-b")),
        day("c-fixed", "posted", run="green-c", alert=Alert(None, "MAPPING_ERROR", "red-c")),
        day("d-waiting", "waiting"),
        day("e-new", "received"),
        day("f-later", "not_run"),
    ]
    errors = [DayOutcome("g-bug", DAY, Outcome.UNEXPECTED_ERROR, "KeyError: x", "run-g"),
              DayOutcome("h", date(2026, 11, 26), Outcome.UNEXPECTED_ERROR, "other day")]
    made = board.board(DAY, days, errors, url)
    assert [(r["client"], r["state"], r["who must act"], r["run"], r["was"])
            for r in made.rows] == [
        ("b-pos", "POS data error", "Toporder", "/runs/red-b", ""),  # the run that raised it
        ("g-bug", "Unexpected error", "the data team", "/runs/run-g", ""),
        ("c-fixed", "Resolved: Posted", "nobody", "/runs/green-c",
         "Mapping error: /runs/red-c"),
        ("d-waiting", "Waiting for closure", "nobody", "/runs/r", ""),
    ]
    assert made.description == (
        "**2026-11-27**: 2 client-days need somebody. 6 clients: 1 Not run yet, "
        "1 POS data error, 1 Posted with warnings, 1 Received, not run yet, 1 Resolved, "
        "1 Unexpected error, 1 Waiting for closure.")


def test_one_day_needing_somebody_is_said_in_the_singular() -> None:
    made = board.board(DAY, [day("b", "missing", Category.POS)], [], url)
    assert made.description.startswith("**2026-11-27**: 1 client-day needs somebody.")
    assert board.board(DAY, [day("a", "posted")], [], url).rows == ()

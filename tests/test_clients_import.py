"""``clients import``: the CSV file read into clients or problems, then written in one go.

The file's rules are table-driven on the pure reader (``clients_csv.parse``); creating,
updating, the idempotent second import, the secrets issued once and the refusals only the
ledger can see (an activation date or territory moved under posted entries, a webhook URL
removed) run on SQLite and PostgreSQL; the command itself through click's CliRunner.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, select

from toporder_sync import notifications
from toporder_sync.cli import main
from toporder_sync.core.errors import ConfigurationError
from toporder_sync.core.model import Entry, Territory
from toporder_sync.ledger import clients, connections
from toporder_sync.ledger.db import session_scope
from toporder_sync.ledger.inbox import StoreResult
from toporder_sync.ledger.journal import post_entry
from toporder_sync.ledger.tables import OutboxRow
from toporder_sync.onboarding import clients_csv, registry
from toporder_sync.onboarding.clients_csv import COLUMNS, Problem
from toporder_sync.onboarding.registry import ImportRefused, ImportResult, RegisteredClient
from toporder_sync.outbox import enqueue

HEADER = ",".join(COLUMNS)
GOOD = "petit-zinc,Le Petit Zinc,2026-11-01,metropole,Europe/Paris,6,12,push,"
HOOK = "https://hooks.toporder.example/zinc"


def parse(text: str) -> clients_csv.ParsedFile:
    return clients_csv.parse(text.encode())


def with_cell(column: str, value: str, row: str = GOOD) -> str:
    cells = row.split(",")
    cells[COLUMNS.index(column)] = value
    return ",".join(cells)


def places(problems: tuple[Problem, ...]) -> list[tuple[int, str]]:
    return [(p.line, p.column) for p in problems]


# --- the file, without a database ------------------------------------------------------------

@pytest.mark.parametrize(("column", "value", "rule"), [
    ("id", "", "required"),
    ("id", "Petit_Zinc", "not a client id"),
    ("id", "-zinc", "not a client id"),
    ("id", "z" * 64, "not a client id"),
    ("name", "", "required"),
    ("name", "   ", "required"),
    ("activation_date", "", "required"),
    ("activation_date", "2026-13-01", "not a date YYYY-MM-DD"),
    ("activation_date", "01/11/2026", "not a date YYYY-MM-DD"),
    ("activation_date", "20261101", "not a date YYYY-MM-DD"),
    ("territory", "mars", "not one of metropole, corse, dom"),
    ("territory", "Corse", "not one of metropole, corse, dom"),
    ("timezone", "Europe/Pariss", "not an IANA time zone name"),
    ("timezone", "UTC+1", "not an IANA time zone name"),
    ("run_hour", "24", "not an hour of the day (0 to 23)"),
    ("run_hour", "-1", "not an hour of the day (0 to 23)"),
    ("run_hour", "6.5", "not an hour of the day (0 to 23)"),
    ("deadline_hour", "noon", "not an hour of the day (0 to 23)"),
    ("source", "email", "not one of push, pull"),
    ("source", "PUSH", "not one of push, pull"),
    ("webhook_url", "http://hooks.toporder.example/zinc", "must be https"),
    ("webhook_url", "ftp://hooks.toporder.example/zinc", "not an http(s) URL with a host"),
    ("webhook_url", "hooks.toporder.example", "not an http(s) URL with a host"),
])
def test_each_rule_names_its_line_and_column(column: str, value: str, rule: str) -> None:
    parsed = parse(f"{HEADER}\n{with_cell(column, value)}\n")
    assert places(parsed.problems) == [(2, column)]
    assert rule in parsed.problems[0].rule
    assert parsed.clients == ()


def test_every_bad_row_is_reported_at_once_in_line_order() -> None:
    parsed = parse("\r\n".join([
        HEADER,
        GOOD,                                                                 # 2
        with_cell("run_hour", "25", with_cell("source", "fax", "lulu,Lulu,2026-11-01,,,,,,")),
        '"zinc-2","Le Zinc,\nsur deux lignes",2026-11-01,,,,,,',              # 4-5, good
        "cafe,Le Café,2026-02-30,,,,,,",                                      # 6
        "petit-zinc,Le Petit Zinc bis,2026-11-01,,,,,,",                      # 7
        "trop,court",                                                         # 8
        ",,,,,,,,",                                                           # 9, skipped
        "",                                                                   # 10, skipped
        "bistrot,Bistrot,2026-11-01,dom,America/Cayenne,7,10,pull,https://b.example/h",
    ]) + "\r\n")
    assert [p.describe("fleet.csv") for p in parsed.problems] == [
        "fleet.csv:3: run_hour: '25' is not an hour of the day (0 to 23)",
        "fleet.csv:3: source: 'fax' is not one of push, pull",
        "fleet.csv:6: activation_date: '2026-02-30' is not a date YYYY-MM-DD",
        "fleet.csv:7: id: 'petit-zinc' is already on line 2",
        "fleet.csv:8: row: 2 fields where the header names 9",
    ]
    assert [(c.line, c.client_id) for c in parsed.clients] == [
        (2, "petit-zinc"), (4, "zinc-2"), (11, "bistrot")]
    assert parsed.clients[1].name == "Le Zinc,\nsur deux lignes"


@pytest.mark.parametrize(("header", "expected"), [
    ("id,name,activation_date,colour", [(1, "colour")]),
    ("id,name,activation_date,name", [(1, "name")]),
    ("id,name", [(1, "activation_date")]),
    ("name,activation_date,source", [(1, "id")]),
    ("Id,name,activation_date", [(1, "Id"), (1, "id")]),
    ("id;name;activation_date", [(1, "id;name;activation_date"), (1, "id"), (1, "name"),
                                 (1, "activation_date")]),
])
def test_the_header_names_known_columns_each_once(
    header: str, expected: list[tuple[int, str]],
) -> None:
    parsed = parse(f"{header}\n")
    assert places(parsed.problems) == expected


def test_a_semicolon_separated_file_is_told_to_use_commas() -> None:
    (unknown, *_missing) = parse("id;name;activation_date\n").problems
    assert unknown.rule == "unknown column (separate the columns with commas, not semicolons)"


def test_rows_are_checked_even_under_a_bad_header() -> None:
    parsed = parse("id,name,activation_date,colour\nzinc,Zinc,2026-11-31,red\n")
    assert places(parsed.problems) == [(1, "colour"), (2, "activation_date")]


@pytest.mark.parametrize(("data", "expected"), [
    (b"", "fleet.csv:1: file: empty: a header row naming the columns is required"),
    (b" \r\n\n", "fleet.csv:1: file: empty: a header row naming the columns is required"),
    (b"id,name,activation_date\nzinc,Caf\xe9,2026-11-01\n",
     "fleet.csv:2: file: not UTF-8 (byte 0xe9): save the file as UTF-8"),
    (b'id,name,activation_date\nzinc,"Zinc,2026-11-01\n',
     "fleet.csv:2: row: not readable as CSV (unexpected end of data); "
     "the rows after it were not read"),
])
def test_an_unreadable_or_empty_file_is_one_problem(data: bytes, expected: str) -> None:
    parsed = clients_csv.parse(data)
    assert [p.describe("fleet.csv") for p in parsed.problems] == [expected]
    assert parsed.clients == ()


def test_absent_or_empty_optional_columns_take_the_defaults_of_clients_activate() -> None:
    minimal = parse("\ufeffid,name,activation_date\n zinc , Le Zinc ,2026-11-01\n")
    empty = parse(f"{HEADER}\nzinc,Le Zinc,2026-11-01,,,,,,\n")
    assert minimal.problems == empty.problems == ()
    assert minimal.clients == empty.clients == (clients_csv.ClientSpec(
        line=2, client_id="zinc", name="Le Zinc", activated_on=date(2026, 11, 1),
        territory=Territory.METROPOLE, timezone=clients.DEFAULT_TIMEZONE,
        run_hour=clients.DEFAULT_RUN_HOUR, deadline_hour=clients.DEFAULT_DEADLINE_HOUR,
        source="push", webhook_url=None),)


def test_a_header_alone_is_an_empty_fleet() -> None:
    assert parse(f"{HEADER}\n") == clients_csv.ParsedFile((), ())


# --- the decision, without a database --------------------------------------------------------

ZINC = RegisteredClient(
    client_id="petit-zinc", name="Le Petit Zinc", integration_id="tpo_zinc",
    activated_on=date(2026, 11, 1), territory=Territory.METROPOLE, timezone="Europe/Paris",
    run_hour=6, deadline_hour=12, active=True, source="push", webhook_url=HOOK,
    has_push_secret=True, has_webhook_secret=True)
SAME = f"petit-zinc,Le Petit Zinc,2026-11-01,metropole,Europe/Paris,6,12,push,{HOOK}"


@pytest.mark.parametrize(("row", "has_entries", "changed", "issued", "refused"), [
    (SAME, True, [], (False, False), []),
    (with_cell("run_hour", "7", SAME), True, ["run_hour"], (False, False), []),
    (with_cell("source", "pull", SAME), True, ["source"], (False, False), []),
    (with_cell("webhook_url", f"{HOOK}/v2", SAME), True, ["webhook_url"], (False, False), []),
    (with_cell("activation_date", "2026-10-01", SAME), False, ["activated_on"], (False, False),
     []),
    (with_cell("territory", "corse", SAME), False, ["territory"], (False, False), []),
    (with_cell("activation_date", "2026-10-01", SAME), True, None, None, ["activation_date"]),
    (with_cell("territory", "dom", SAME), True, None, None, ["territory"]),
    (with_cell("webhook_url", "", SAME), False, None, None, ["webhook_url"]),
])
def test_plan_decides_each_row_against_the_registered_client(
    row: str, has_entries: bool, changed: list[str] | None, issued: tuple[bool, bool] | None,
    refused: list[str],
) -> None:
    (spec,) = parse(f"{HEADER}\n{row}\n").clients
    decided = registry.plan([spec], {ZINC.client_id: ZINC},
                            frozenset({ZINC.client_id} if has_entries else ()))
    assert [p.column for p in decided.problems] == refused
    if changed is None:
        assert (decided.created, decided.updated, decided.unchanged) == ((), (), 0)
    elif not changed:
        assert (decided.created, decided.updated, decided.unchanged) == ((), (), 1)
    else:
        (change,) = decided.updated
        assert list(change.values) == changed
        assert (change.issue_push_secret, change.issue_webhook_secret) == issued


def test_plan_issues_the_secrets_a_client_lacks() -> None:
    bare = dataclasses.replace(ZINC, has_push_secret=False, has_webhook_secret=False)
    (spec,) = parse(f"{HEADER}\n{SAME}\n").clients
    (change,) = registry.plan([spec], {bare.client_id: bare}, frozenset()).updated
    assert (dict(change.values), change.issue_push_secret, change.issue_webhook_secret) == (
        {}, True, True)
    (new,) = registry.plan([spec], {}, frozenset()).created
    assert (new.issue_push_secret, new.issue_webhook_secret) == (True, True)


# --- the ledger, on SQLite and PostgreSQL ----------------------------------------------------

def run_import(engine: Engine, text: str, now: datetime) -> ImportResult:
    with session_scope(engine) as session:
        return registry.import_clients(session, parse(text), now=now)


def refused(engine: Engine, text: str, now: datetime) -> list[str]:
    with pytest.raises(ImportRefused) as caught:
        run_import(engine, text, now)
    return [p.describe("f.csv") for p in caught.value.problems]


def registered(engine: Engine) -> dict[str, RegisteredClient]:
    with session_scope(engine) as session:
        return {c.client_id: c for c in registry.list_clients(session)}


FLEET = "\n".join([
    HEADER,
    "zinc,Le Zinc,2026-11-01,,,,,,",
    f"lulu,Chez Lulu,2026-11-15,dom,America/Martinique,7,14,pull,{HOOK}",
    f"bistrot,Bistrot,2026-12-01,corse,,5,,push,{HOOK}?c=bistrot",
]) + "\n"


def test_import_creates_updates_and_a_second_import_changes_nothing(
    engine: Engine, now: datetime,
) -> None:
    first = run_import(engine, FLEET, now)
    assert (first.created, first.updated, first.unchanged) == (3, 0, 0)
    assert [(i.client_id, i.created, i.push_secret is not None, i.webhook_secret is not None)
            for i in first.issued] == [("zinc", True, True, False), ("lulu", True, False, True),
                                       ("bistrot", True, True, True)]
    by_id = {i.client_id: i for i in first.issued}
    with session_scope(engine) as session:
        for client_id, issued in by_id.items():
            record = clients.get_client(session, client_id)
            assert record.integration_id == issued.integration_id
            assert record.integration_id.startswith(clients.INTEGRATION_ID_PREFIX)
            assert record.active and record.created_at == now
            assert notifications.webhook(session, client_id).secret == issued.webhook_secret
            if issued.push_secret is not None:
                # The secret the single-client command hands out is the one printed here.
                again = connections.issue_push_secret(session, client_id)
                assert (again.secret, again.created) == (issued.push_secret, False)
    assert registered(engine)["lulu"] == RegisteredClient(
        client_id="lulu", name="Chez Lulu", integration_id=by_id["lulu"].integration_id,
        activated_on=date(2026, 11, 15), territory=Territory.DOM,
        timezone="America/Martinique", run_hour=7, deadline_hour=14, active=True,
        source="pull", webhook_url=HOOK, has_push_secret=False, has_webhook_secret=True)

    second = run_import(engine, FLEET, now)
    assert (second.created, second.updated, second.unchanged, second.issued) == (0, 0, 3, ())

    changed = FLEET.replace("Le Zinc,2026-11-01,,,,,,", "Le Zinc (Lyon),2026-10-01,,,8,,,")
    changed = changed.replace(",pull,", ",push,") + "cave,La Cave,2026-12-01,,,,,pull,\n"
    third = run_import(engine, changed.replace(f"{HOOK}?c=bistrot", f"{HOOK}/bistrot"), now)
    assert (third.created, third.updated, third.unchanged) == (1, 3, 0)
    # lulu became push: its first push secret; bistrot's new URL keeps its signing secret.
    assert [(i.client_id, i.created, i.push_secret is not None, i.webhook_secret is not None)
            for i in third.issued] == [("lulu", False, True, False), ("cave", True, False, False)]
    after = registered(engine)
    assert (after["zinc"].name, after["zinc"].activated_on, after["zinc"].run_hour) == (
        "Le Zinc (Lyon)", date(2026, 10, 1), 8)
    assert (after["lulu"].source, after["lulu"].has_push_secret) == ("push", True)
    assert after["lulu"].integration_id == by_id["lulu"].integration_id
    assert after["bistrot"].webhook_url == f"{HOOK}/bistrot"
    with session_scope(engine) as session:
        assert notifications.webhook(session, "bistrot").secret == \
            by_id["bistrot"].webhook_secret


def test_a_client_activated_by_hand_is_given_its_push_secret_once(
    engine: Engine, client_id: str, now: datetime,
) -> None:
    with session_scope(engine) as session:
        before = clients.get_client(session, client_id)
    row = f"{client_id},{before.name},{before.activated_on.isoformat()},,,,,,"
    first = run_import(engine, f"{HEADER}\n{row}\n", now)
    assert (first.created, first.updated, first.unchanged) == (0, 1, 0)
    (issued,) = first.issued
    assert (issued.integration_id, issued.created, issued.webhook_secret) == (
        before.integration_id, False, None)
    assert issued.push_secret is not None and issued.push_secret.startswith("whsec_")
    assert run_import(engine, f"{HEADER}\n{row}\n", now).issued == ()
    with session_scope(engine) as session:
        assert clients.get_client(session, client_id) == before


def post_one_day(engine: Engine, client_id: str, store: Callable[..., StoreResult],
                 entry: Entry, now: datetime) -> None:
    closure = store(b'{"schema": "toporder.closure/v1"}')
    with session_scope(engine) as session:
        post_entry(session, client_id, entry.date, closure_id=closure.closure_id, entry=entry,
                   now=now)


def test_a_client_with_posted_entries_keeps_its_activation_date_and_territory(
    engine: Engine, client_id: str, store: Callable[..., StoreResult],
    make_entry: Callable[..., Entry], now: datetime,
) -> None:
    run_import(engine, f"{HEADER}\nlulu,Chez Lulu,2026-11-01,,,,,,{HOOK}\n", now)
    post_one_day(engine, client_id, store, make_entry(), now)
    before = registered(engine)
    moved = "\n".join([
        HEADER,
        f"{client_id},Le Petit Zinc,2026-11-02,corse,,,,,",      # posted entries: refused
        "lulu,Chez Lulu,2026-11-20,dom,,,,,",                     # none, but its URL removed
        "nouveau,Nouveau,2026-12-01,,,,,,",                       # good, yet not written
        "lulu-2,Lulu 2,2026-11-31,,,,,,",                         # a bad date, from the file
    ]) + "\n"
    assert refused(engine, moved, now) == [
        "f.csv:2: activation_date: petit-zinc has posted entries: its activation date stays "
        "2026-11-01 (moving it would put posted days before it or leave days unposted after "
        "them; a correction is a reversal, not a new date)",
        "f.csv:2: territory: petit-zinc has posted entries under the VAT rates of metropole: "
        "its territory stays metropole",
        "f.csv:3: webhook_url: lulu sends its notifications to a webhook URL: an import does "
        "not remove it (they would wait unsent); give its URL",
        "f.csv:5: activation_date: '2026-11-31' is not a date YYYY-MM-DD",
    ]
    assert registered(engine) == before

    # Without posted entries, the activation date and the territory may still be corrected.
    fixed = run_import(engine, f"{HEADER}\nlulu,Chez Lulu,2026-11-20,dom,,,,,{HOOK}\n", now)
    assert (fixed.updated, fixed.issued) == (1, ())
    assert (registered(engine)["lulu"].activated_on, registered(engine)["lulu"].territory) == (
        date(2026, 11, 20), Territory.DOM)
    # The same settings as the ledger's: nothing moves, nothing is refused.
    kept = run_import(engine, f"{HEADER}\n{client_id},Le Petit Zinc,2026-11-01,,,,,,\n", now)
    assert (kept.updated, kept.unchanged) == (1, 0)  # its first push secret, nothing else


def test_a_new_webhook_url_makes_the_waiting_notifications_due(
    engine: Engine, client_id: str, now: datetime,
) -> None:
    later = now + timedelta(hours=1)
    with session_scope(engine) as session:
        enqueue(session, topic=notifications.TOPIC, client_id=client_id,
                business_date=date(2026, 11, 27), payload={}, now=later)
    run_import(engine, f"{HEADER}\n{client_id},Le Petit Zinc,2026-11-01,,,,,,{HOOK}\n", now)
    with session_scope(engine) as session:
        assert session.scalars(select(OutboxRow.next_attempt_at)).one() == now


# --- the command -----------------------------------------------------------------------------

@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("TOPORDER_SYNC_DATABASE_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.chdir(tmp_path)
    yield CliRunner()


def invoke(cli: CliRunner, *args: str, code: int = 0) -> Result:
    result = cli.invoke(main, list(args))
    assert result.exit_code == code, (result.output, result.exception)
    return result


def test_the_command_prints_secrets_once_and_refuses_a_bad_file_whole(cli: CliRunner) -> None:
    Path("latin1.csv").write_bytes(f"{HEADER}\ncafe,Café,2026-11-01,,,,,,\n".encode("latin-1"))
    latin1 = invoke(cli, "clients", "import", "latin1.csv", code=2)
    assert latin1.stderr.splitlines() == [
        "latin1.csv:2: file: not UTF-8 (byte 0xe9): save the file as UTF-8",
        "latin1.csv: refused, nothing written (1 problem(s))"]
    assert not Path("ledger.db").exists()  # refused before the ledger was opened

    Path("fleet.csv").write_text(FLEET, encoding="utf-8")
    first = invoke(cli, "clients", "import", "fleet.csv")
    issued = list(csv.DictReader(io.StringIO(first.stdout)))
    assert [(r["id"], bool(r["push_secret"]), bool(r["webhook_secret"])) for r in issued] == [
        ("zinc", True, False), ("lulu", False, True), ("bistrot", True, True)]
    assert first.stderr == "3 created, 0 updated, 0 unchanged\n"

    second = invoke(cli, "clients", "import", "fleet.csv")
    assert (second.stdout, second.stderr) == ("", "0 created, 0 updated, 3 unchanged\n")

    listed = json.loads(invoke(cli, "clients", "list", "--json").stdout)
    assert [(c["client"], c["source"], c["webhook_url"]) for c in listed] == [
        ("bistrot", "push", f"{HOOK}?c=bistrot"), ("lulu", "pull", HOOK), ("zinc", "push", None)]
    table = invoke(cli, "clients", "list").stdout
    assert "source" in table.splitlines()[0] and HOOK in table
    assert not any(secret in json.dumps(listed) + table
                   for row in issued for secret in (row["push_secret"], row["webhook_secret"])
                   if secret)

    Path("bad.csv").write_text(f"{HEADER},notes\nnew,New,2026-11-01,,,,,,,\n"
                               "zinc,Le Zinc,2026-11-01,,,,24,,,\n", encoding="utf-8")
    bad = invoke(cli, "clients", "import", "bad.csv", code=2)
    assert bad.stdout == ""
    assert bad.stderr.splitlines() == [
        "bad.csv:1: notes: unknown column (the columns are id, name, activation_date, "
        "territory, timezone, run_hour, deadline_hour, source, webhook_url)",
        "bad.csv:3: deadline_hour: '24' is not an hour of the day (0 to 23)",
        "bad.csv: refused, nothing written (2 problem(s))",
    ]
    assert len(json.loads(invoke(cli, "clients", "list", "--json").stdout)) == 3


def test_a_client_activated_meanwhile_fails_the_import_whole(
    engine: Engine, client_id: str, now: datetime, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As if `clients activate` had committed petit-zinc between the read and the insert.
    monkeypatch.setattr(registry, "read_registered", lambda _session, _ids: {})
    text = f"{HEADER}\nnouveau,Nouveau,2026-12-01,,,,,,\n{client_id},Le Zinc,2026-11-01,,,,,,\n"
    with pytest.raises(ConfigurationError, match="1 of the file's new clients were activated"):
        run_import(engine, text, now)
    assert set(registered(engine)) == {client_id}

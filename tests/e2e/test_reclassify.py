"""``mapping set … --reclassify`` end to end, on SQLite and PostgreSQL: the command as a user
runs it (a real process), the days run through the flow on a real Prefect server.

Three days are posted with an unknown method ("Lydia", 30.00 a day, on 471000); the method is
mapped with ``--reclassify``: 471000 back to zero in the FEC, the new account holds the three
days' amounts, nine entries (three originals, three reversals, three new), a second run adds
none. A second client gets the same, its reclassification killed (SIGKILL) after the second
day's repost, then run again: its ledger ends as the first client's.
"""

from __future__ import annotations

import csv
import json
import os
import signal
from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from samples import unknown_method_day
from sqlalchemy import Engine

from e2e.conftest import Cli
from toporder_sync import service
from toporder_sync.checkpoints import CRASH_AT
from toporder_sync.ledger import clients, journal
from toporder_sync.ledger.db import make_engine, session_scope, upgrade

NOW = datetime(2026, 11, 28, 5, 30, tzinfo=UTC)
FIRST, LAST = date(2026, 11, 24), date(2026, 11, 26)


def _client(engine: Engine, client_id: str) -> None:
    with session_scope(engine) as session:
        client = clients.activate_client(session, client_id, name="Le Petit Zinc",
                                         activated_on=date(2026, 11, 1), now=NOW)
    for day in (24, 25, 26):
        service.receive(engine, unknown_method_day(client.integration_id, day), "test", now=NOW)


def _entries(engine: Engine, client_id: str) -> list[tuple[Any, ...]]:
    with session_scope(engine) as session:
        stored = journal.entries_between(session, client_id, FIRST, LAST)
    return [(s.number, s.kind, s.reverses_number, s.entry.date, s.entry.piece_ref,
             [(line.account, line.debit, line.credit) for line in s.entry.lines])
            for s in stored]


def _fec_balances(cli: Cli, client_id: str) -> dict[str, Decimal]:
    out = cli.workdir / f"{client_id}.fec.txt"
    cli("export", "fec", client_id, "--from", FIRST.isoformat(), "--to", LAST.isoformat(),
        "--out", str(out))
    balances: dict[str, Decimal] = defaultdict(Decimal)
    with out.open(encoding="iso-8859-15", newline="") as lines:
        for row in csv.DictReader(lines, delimiter="\t"):
            balances[row["CompteNum"]] += (Decimal(row["Debit"].replace(",", "."))
                                           - Decimal(row["Credit"].replace(",", ".")))
    return dict(balances)


def _methods(cli: Cli, client_id: str) -> dict[str, int]:
    rows = json.loads(cli("methods", client_id, "--json").stdout)
    return {row["name"]: row["days_on_other_methods"] for row in rows}


def _flow_runs(api: str, client_id: str) -> int:
    answer = httpx.post(f"{api}/flow_runs/count",
                        json={"flow_runs": {"tags": {"all_": [f"client:{client_id}"]}}})
    answer.raise_for_status()
    count: int = answer.json()
    return count


def test_a_mapped_method_moves_every_posted_day_and_a_crash_half_way_is_finished_by_a_rerun(
        tmp_path: Path, prefect_api: str, ledger_url: str) -> None:
    backend = "sqlite" if ledger_url.startswith("sqlite") else "pg"
    direct, crashed = f"direct-{backend}", f"crashed-{backend}"
    engine = make_engine(ledger_url)
    upgrade(engine)
    cli = Cli(tmp_path, prefect_api)
    cli.env["TOPORDER_SYNC_DATABASE_URL"] = ledger_url
    try:
        for client_id in (direct, crashed):
            _client(engine, client_id)
            cli("rerun", client_id, "--from", FIRST.isoformat(), "--to", LAST.isoformat())
            assert _methods(cli, client_id)["Lydia"] == 3
            told = cli("mapping", "set", client_id, "Lydia", "512100").stdout.splitlines()
            assert told == [
                f"{client_id}: 'Lydia' → 512100",
                f"{client_id}: 3 posted day(s) carry 'Lydia' on another account; to reverse "
                f"and repost them on today's accounts: toporder-sync mapping set {client_id} "
                "Lydia 512100 --reclassify",
            ]
            assert len(_entries(engine, client_id)) == 3  # telling changed nothing

        moved = cli("mapping", "set", direct, "Lydia", "512100", "--reclassify")
        assert moved.stdout.splitlines() == [
            f"{direct}: 'Lydia' → 512100",
            f"{direct}: 3 posted day(s) to reclassify, oldest first, each by a reversal and a "
            "new entry (PCG art. 420-5); no lock date is recorded for a client's periods: "
            "none is checked",
            f"{direct} 2026-11-24: reclassified: n°1 reversed, n°5 posted: 'Lydia' 30.00 from "
            "471000 to 512100",
            f"{direct} 2026-11-25: reclassified: n°2 reversed, n°7 posted: 'Lydia' 30.00 from "
            "471000 to 512100",
            f"{direct} 2026-11-26: reclassified: n°3 reversed, n°9 posted: 'Lydia' 30.00 from "
            "471000 to 512100",
            f"{direct}: 3 reclassified, 0 unchanged, 0 failed, 0 not touched",
        ]
        assert "Traceback" not in moved.stderr

        # Killed once the second day is reposted; the third is left as it was.
        cli.env[CRASH_AT] = "reclassified:2026-11-25"
        killed = cli("mapping", "set", crashed, "Lydia", "512100", "--reclassify", check=None)
        del cli.env[CRASH_AT]
        assert killed.returncode == -signal.SIGKILL, (killed.stdout, killed.stderr)
        assert [e[1] for e in _entries(engine, crashed)] == [
            "entry", "entry", "entry", "reversal", "entry", "reversal", "entry"]
        finished = cli("mapping", "set", crashed, "Lydia", "512100", "--reclassify")
        assert finished.stdout.splitlines()[-2:] == [
            f"{crashed} 2026-11-26: reclassified: n°3 reversed, n°9 posted: 'Lydia' 30.00 from "
            "471000 to 512100",
            f"{crashed}: 1 reclassified, 0 unchanged, 0 failed, 0 not touched",
        ]

        expected = _entries(engine, direct)
        assert [(number, kind, reverses) for number, kind, reverses, *_ in expected] == [
            (1, "entry", None), (2, "entry", None), (3, "entry", None),
            (4, "reversal", 1), (5, "entry", None), (6, "reversal", 2), (7, "entry", None),
            (8, "reversal", 3), (9, "entry", None)]
        assert _entries(engine, crashed) == expected
        for client_id in (direct, crashed):
            balances = _fec_balances(cli, client_id)
            assert balances["471000"] == Decimal("0.00")
            assert balances["512100"] == Decimal("90.00")
            assert _methods(cli, client_id)["Lydia"] == 0
            again = cli("mapping", "set", client_id, "Lydia", "512100", "--reclassify")
            assert again.stdout.splitlines()[-1] == (
                f"{client_id}: 0 reclassified, 0 unchanged, 0 failed, 0 not touched")
            assert _entries(engine, client_id) == expected
            told = cli("mapping", "set", client_id, "Lydia", "512100").stdout.splitlines()
            assert told[-1] == f"{client_id}: no posted day carries 'Lydia' on another account"
        # a flow run per day posted: three first, three reclassified
        assert _flow_runs(prefect_api, direct) == 6
        assert _flow_runs(prefect_api, crashed) == 6
    finally:
        os.environ.pop(CRASH_AT, None)
        engine.dispose()

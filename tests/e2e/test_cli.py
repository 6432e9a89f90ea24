"""The command line end to end, exactly as the issue's CLI contract states it: real processes,
a SQLite ledger file, a real Prefect server."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from samples import encode, sample_document

from e2e.conftest import BIN, Cli
from toporder_sync.outcome import EXIT_INTERNAL, EXIT_WAITING

DAY = "2026-11-27"


def activate(cli: Cli, client: str = "petit-zinc", on: str = "2026-11-01") -> str:
    result = cli("clients", "activate", client, "--name", "Le Petit Zinc", "--on", on)
    return result.stdout.strip().splitlines()[-1]


def closure_file(cli: Cli, sample: str, integration_id: str, name: str, **closure: str) -> str:
    document = sample_document(sample)
    document["integration_id"] = integration_id
    document["closure"].update(closure)
    (cli.workdir / name).write_bytes(encode(document))
    return name


def status(cli: Cli, client: str = "petit-zinc") -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(cli("status", client, "--json").stdout)
    return rows


def test_activation_prints_an_unguessable_identifier_alone_on_the_last_line(cli: Cli) -> None:
    first, second = activate(cli), activate(cli, "bar-du-port")
    assert first != second and first.startswith("tpo_") and len(first) >= 30
    listed = cli("clients", "list").stdout
    assert "petit-zinc" in listed and "bar-du-port" in listed
    again = cli("clients", "activate", "petit-zinc", "--name", "x", "--on", "2026-11-01",
                check=2)
    assert "petit-zinc" in again.stderr


def test_a_day_from_receive_to_fec(cli: Cli, prefect_api: str) -> None:
    iid = activate(cli)
    name = closure_file(cli, "valid-unknown-method.json", iid, "z412.json")
    assert "stored" in cli("receive", name).stdout
    assert "not stored again" in cli("receive", name).stdout

    posted = cli("run", "petit-zinc", "--date", DAY)
    assert "Posted with warnings" in posted.stdout and "'Lydia'" in posted.stdout
    cli("run", "petit-zinc", "--date", DAY)  # a rerun is idempotent

    [day] = status(cli)
    assert (day["business_date"], day["state"], day["error_category"]) == (DAY, "posted", None)
    assert day["messages"] == [] and "Lydia" in day["warnings"][0]["message"]

    methods = json.loads(cli("methods", "petit-zinc", "--json").stdout)
    by_name = {m["name"]: m for m in methods}
    assert by_name["Lydia"] == {"name": "Lydia", "first_seen": DAY, "last_seen": DAY,
                                "account": "471000", "rule": "fallback",
                                "days_on_other_methods": 1}
    assert by_name["Carte Bancaire"]["account"] == "511500"

    cli("mapping", "set", "petit-zinc", "Lydia", "511600")
    assert "Lydia" in cli("mapping", "list", "petit-zinc").stdout
    cli("run", "petit-zinc", "--date", DAY)  # same closure, new mapping: replaced

    out = cli.workdir / "fec.txt"
    cli("export", "fec", "petit-zinc", "--from", "2026-11-01", "--to", "2026-11-30",
        "--out", str(out))
    lines = out.read_bytes().decode("iso-8859-15").splitlines()
    assert lines[0].split("\t")[:5] == ["JournalCode", "JournalLib", "EcritureNum",
                                        "EcritureDate", "CompteNum"]
    assert len(lines[0].split("\t")) == 18
    numbers = [line.split("\t")[2] for line in lines[1:]]
    assert sorted(set(numbers), key=int) == ["1", "2", "3"]  # entry, reversal, corrected entry
    lydia = [line.split("\t") for line in lines[1:] if "\t511600\t" in line]
    assert lydia and lydia[0][11] == "30,00" and lydia[0][3] == "20261127"

    with urllib.request.urlopen(urllib.request.Request(
        f"{prefect_api}/flow_runs/filter", method="POST",
        data=json.dumps({"flow_runs": {"name": {"any_": [f"petit-zinc {DAY}"]}}}).encode(),
        headers={"Content-Type": "application/json"},
    )) as answer:
        runs = json.load(answer)
    assert len(runs) == 3 and all("client:petit-zinc" in r["tags"] for r in runs)
    assert {r["state"]["name"] for r in runs} == {"Posted with warnings", "Posted"}


def test_bad_closures_and_refusals_exit_non_zero_with_the_reason(cli: Cli) -> None:
    iid = activate(cli)
    unbalanced = closure_file(cli, "invalid-unbalanced.json", iid, "unbalanced.json")
    cli("receive", unbalanced)
    failed = cli("run", "petit-zinc", "--date", DAY, check=1)
    assert "POS data error" in failed.stderr and "debit 1,520.00 ≠ credit 1,525.00" in (
        failed.stderr)
    assert status(cli)[0]["state"] == "flagged" and status(cli)[0]["error_category"] == "pos"

    early = cli("run", "petit-zinc", "--date", "2026-10-31", check=3)
    assert "2026-10-31" in early.stderr and "2026-11-01" in early.stderr
    missing = cli("run", "petit-zinc", "--date", "2026-11-20", check=4)
    assert "no closure received" in missing.stderr

    before = closure_file(cli, "valid-metropole.json", iid, "before.json",
                          business_date="2026-10-30")
    refused = cli("receive", before, check=3)
    assert "activation" in refused.stderr
    stranger = closure_file(cli, "valid-metropole.json", "tpo_nobody", "stranger.json")
    assert "unknown integration identifier" in cli("receive", stranger, check=3).stderr
    (cli.workdir / "broken.json").write_bytes(b'{"integration_id": ')
    assert "broken.json" in cli("receive", "broken.json", check=1).stderr
    days = {d["business_date"]: d["state"] for d in status(cli)}
    assert "2026-10-30" not in days  # nothing stored for refused deliveries


def test_mapping_to_an_invalid_account_is_refused(cli: Cli) -> None:
    activate(cli)
    bad = cli("mapping", "set", "petit-zinc", "Lydia", "706100", check=2)
    assert "class 4 or 5" in bad.stderr


def test_every_command_has_help(cli: Cli) -> None:
    for command in (["--help"], ["clients", "activate", "--help"], ["mapping", "set", "--help"],
                    ["methods", "--help"], ["receive", "--help"], ["run", "--help"],
                    ["status", "--help"], ["export", "fec", "--help"], ["demo", "--help"]):
        assert "Usage:" in cli(*command).stdout


def test_demo_runs_against_the_simulator_on_a_fresh_folder(cli: Cli) -> None:
    result = cli("demo", "--dir", "demo")
    summary = json.loads(result.stdout.strip().splitlines()[-1].removeprefix("demo: "))
    assert summary["client_days"] == 28
    assert (summary["posted"], summary["flagged"], summary["missing"]) == (26, 1, 1)
    # Both kinds of client posted: pull closures fetched from the simulator's API by the flow,
    # push closures signed by the simulator and stored by the receiver (one never pushed).
    assert summary["posted_by_source"] == {"pull": 13, "push": 13}
    assert summary["pushed"] == 13 and summary["pulled"] == 14
    # The API's first answer for one pull day was a 429: waited out, asked again, posted.
    [retry] = summary["pull_retries"]
    assert retry["statuses"] == [429, 200]
    survived = next(line for line in result.stdout.splitlines()
                    if line.startswith("Pull fault survived"))
    assert f"{retry['client']} {retry['business_date']} with HTTP 429" in survived
    assert survived.endswith(": Posted")
    # Toporder was told of each flagged or missing day, once: the simulator's webhook got them.
    flagged = sorted((d["client"], d["business_date"]) for d in summary["flagged_days"])
    assert sorted((n["client"], n["business_date"]) for n in summary["notified"]) == flagged
    rules = {n["state"]: (n["category"], n["rules"]) for n in summary["notified"]}
    assert rules["missing"] == ("pos", ["closure_missing"])
    assert rules["flagged"][0] == "pos" and "debit_equals_credit" in rules["flagged"][1]
    assert "2 sent, 0 to retry, 0 waiting, 0 dead" in result.stdout
    # The rest of the story: refused, unknown method mapped then rerun, files.
    assert "before the activation date" in result.stdout
    assert "reran its day: Posted: entry" in result.stdout
    assert "replacing the day's earlier entry (reversed)" in result.stdout
    demo = cli.workdir / "demo"
    assert len(list(demo.glob("closures/*.json"))) == 27
    assert len(sorted(demo.glob("*-FEC.txt"))) == 4


def _merged(cli: Cli, *args: str) -> tuple[int, list[str]]:
    """Exit code and every line printed, stdout and stderr merged in the order printed."""
    result = subprocess.run([str(BIN / "toporder-sync"), *args], cwd=cli.workdir, env=cli.env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=600)
    return result.returncode, [line for line in result.stdout.splitlines() if line.strip()]


def test_each_outcome_of_run_has_its_exit_code_and_the_result_line_is_last(cli: Cli) -> None:
    # A business day whose closure is still awaited: yesterday, locally, before 23:00.
    utc_now = datetime.now(UTC)
    zone = "UTC" if 1 <= utc_now.hour <= 21 else "Etc/GMT+6"
    yesterday = (utc_now.astimezone(ZoneInfo(zone)).date() - timedelta(days=1)).isoformat()
    cli("clients", "activate", "attente", "--name", "En attente", "--on", "2026-11-01",
        "--timezone", zone, "--deadline-hour", "23")
    code, lines = _merged(cli, "run", "attente", "--date", yesterday)
    assert code == EXIT_WAITING, lines
    assert lines[-1].startswith(f"attente {yesterday}: Waiting for closure: "), lines

    # A bug before the day's story: the client's timezone no longer exists.
    activate(cli)
    with sqlite3.connect(cli.workdir / "ledger.db") as ledger:
        ledger.execute("UPDATE clients SET timezone = 'Nowhere/Atlantis' "
                       "WHERE client_id = 'petit-zinc'")
    code, lines = _merged(cli, "run", "petit-zinc", "--date", DAY)
    assert code == EXIT_INTERNAL, lines
    assert lines[-1].startswith(f"petit-zinc {DAY}: Unexpected error: "), lines
    assert not any("Traceback" in line for line in lines), lines


def test_an_error_is_one_line_and_a_documented_exit_code(cli: Cli) -> None:
    activate(cli)
    missing_folder = cli("export", "fec", "petit-zinc", "--from", "2026-11-01", "--to",
                         "2026-11-30", "--out", "no/such/folder/fec.txt", check=2)
    assert "'no/such/folder' does not exist" in missing_folder.stderr
    assert "Traceback" not in missing_folder.stderr
    with sqlite3.connect(cli.workdir / "ledger.db") as ledger:
        ledger.execute("UPDATE client_days SET messages = 'not json' WHERE 1 = 1")
        ledger.execute("INSERT INTO client_days (client_id, business_date, state, messages, "
                       "warnings, attempts, updated_at) VALUES ('petit-zinc', '2026-11-20', "
                       "'flagged', 'not json', '[]', 1, '2026-11-21 00:00:00')")
    broken = cli("status", "petit-zinc", check=EXIT_INTERNAL)
    [line] = broken.stderr.strip().splitlines()
    assert line.startswith("error: status: ") and "--debug" in line
    debugged = cli("--debug", "status", "petit-zinc", check=None)
    assert debugged.returncode == 1 and "Traceback" in debugged.stderr

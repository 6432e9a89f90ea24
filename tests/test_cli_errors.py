"""No command ends in a traceback unless asked to: one line, a documented exit code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from toporder_sync import cli
from toporder_sync.core.errors import TransientError
from toporder_sync.ledger import days
from toporder_sync.ledger.db import DATABASE_URL_ENV
from toporder_sync.outcome import EXIT_INTERNAL, EXIT_UNAVAILABLE
from toporder_sync.runner import DEBUG_ENV


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATABASE_URL_ENV, f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    result = CliRunner().invoke(cli.main, ["clients", "activate", "zinc", "--name", "Zinc",
                                           "--on", "2026-11-01"])
    assert result.exit_code == 0, result.output


def _failing(error: BaseException) -> Any:
    def fail(*_args: Any, **_kwargs: Any) -> Any:
        raise error
    return fail


def test_a_bug_is_one_line_naming_the_command_and_exit_7(
        ledger: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(days, "day_statuses", _failing(KeyError("a bug")))
    result = CliRunner().invoke(cli.main, ["status", "zinc"])
    assert result.exit_code == EXIT_INTERNAL, result.output
    assert result.output.strip().splitlines() == [
        "error: status: KeyError: 'a bug' (an internal error; --debug shows the traceback)"]
    assert "Traceback" not in result.output


def test_debug_lets_the_traceback_through(ledger: None,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(days, "day_statuses", _failing(KeyError("a bug")))
    result = CliRunner().invoke(cli.main, ["--debug", "status", "zinc"])
    assert isinstance(result.exception, KeyError) and result.exit_code == 1


def test_an_outage_after_retries_is_exit_8(ledger: None,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(days, "day_statuses",
                        _failing(TransientError("database temporarily unavailable")))
    result = CliRunner().invoke(cli.main, ["status", "zinc"])
    assert result.exit_code == EXIT_UNAVAILABLE, result.output
    assert result.output.strip() == ("unavailable: database temporarily unavailable; "
                                     "try again later")


def test_ctrl_c_is_one_line_and_exit_130(ledger: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(days, "day_statuses", _failing(KeyboardInterrupt()))
    result = CliRunner().invoke(cli.main, ["status", "zinc"])
    assert (result.exit_code, result.output.strip()) == (130, "interrupted")


def test_fec_into_a_missing_folder_is_a_usage_error(ledger: None, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.main, [
        "export", "fec", "zinc", "--from", "2026-11-01", "--to", "2026-11-30",
        "--out", str(tmp_path / "nowhere" / "fec.txt")])
    assert result.exit_code == 2, result.output
    assert "does not exist" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "nowhere").exists()

"""The reliability suite's plugin: the tally of attacks, written when the session ends.

Every test starts with a clean per-test count of violations; a test that fails without having
recorded a violation of the invariants failed on something nobody handled, and counts as
``unhandled``. ``make reliability`` sets ``RELIABILITY_TALLY`` and prints the result
(``report.py``); under plain ``pytest`` the tally is kept in memory only.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from reliability import tally


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    tally.start_test()
    yield


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # Called for every test of the session, not only this folder's (it has no item argument).
    if "reliability/" not in report.nodeid:
        return
    if report.failed and tally.test_recorded_violations() == 0:
        tally.unhandled(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    tally.write()

"""Pennylane ids of a company's sales journal and ledger accounts, looked up once and cached.

Our entries name a journal by code (``VT``) and accounts by PCG number (``706100``); Pennylane
wants their ids. The resolver asks once per company (a client's token) and remembers, safely
across threads. What is missing in Pennylane is a ``PennylaneRejected`` of category LEDGER
naming the journal or the account: to create (or enable) in Pennylane, or to change here.

Several accounts with one number (Pennylane allows it): the rule is an ENABLED account first,
then the lowest id, i.e. the oldest, the one the company's chart was set up with; the choice is
deterministic, so an entry pushed twice would use the same ids. A number whose accounts are all
disabled is refused rather than posted to a disabled account.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Protocol

from toporder_sync.core.errors import ledger_error
from toporder_sync.pennylane.client import Journal, LedgerAccount, PennylaneRejected


class Directory(Protocol):
    """What the resolver needs of the API (``PennylaneClient`` is one)."""

    def journals(self) -> list[Journal]: ...

    def ledger_accounts(self, number: str) -> list[LedgerAccount]: ...


class Resolver:
    """Cache of ids per company key (see ``company_key`` in the sink: client and token)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._journals: dict[tuple[str, str], int] = {}
        self._accounts: dict[tuple[str, str], int] = {}

    def journal_id(self, api: Directory, company: str, code: str) -> int:
        with self._lock:
            cached = self._journals.get((company, code))
        if cached is not None:
            return cached
        found = sorted(j.id for j in api.journals() if j.code == code)
        if not found:
            raise PennylaneRejected(ledger_error(
                "pennylane_journal", "journal",
                f"journal {code} does not exist in the Pennylane company: create a journal "
                f"with code {code} in Pennylane, or configure this client's journal code with "
                "`toporder-sync pennylane configure CLIENT --journal CODE`"))
        with self._lock:
            self._journals[(company, code)] = found[0]
        return found[0]

    def account_ids(self, api: Directory, company: str,
                    numbers: Iterable[str]) -> Mapping[str, int]:
        """The id of every account number; every missing one is named in one error."""
        ids: dict[str, int] = {}
        problems: list[str] = []
        for number in dict.fromkeys(numbers):
            with self._lock:
                cached = self._accounts.get((company, number))
            if cached is None:
                chosen = _choose(number, api.ledger_accounts(number))
                if isinstance(chosen, str):
                    problems.append(chosen)
                    continue
                cached = chosen
                with self._lock:
                    self._accounts[(company, number)] = cached
            ids[number] = cached
        if problems:
            raise PennylaneRejected(ledger_error(
                "pennylane_account", "account",
                "; ".join(problems) + ": create or enable the account in the Pennylane "
                "company's chart of accounts, or map the lines to an account that exists there"))
        return MappingProxyType(ids)

    def forget(self, company: str) -> None:
        """Drop a company's ids (Pennylane refused one: it may have been deleted or changed)."""
        with self._lock:
            for cache in (self._journals, self._accounts):
                for key in [k for k in cache if k[0] == company]:
                    del cache[key]


def _choose(number: str, accounts: list[LedgerAccount]) -> int | str:
    """The id to use for ``number``, or what is wrong with it."""
    exact = [a for a in accounts if a.number == number]
    if not exact:
        return f"account {number} does not exist in the Pennylane company"
    enabled = sorted(a.id for a in exact if a.enabled)
    if not enabled:
        return f"account {number} is disabled in the Pennylane company"
    return enabled[0]

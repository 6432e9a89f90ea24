"""Matching payment-method names to accounts, exactly as ``accounting-rules.md`` orders it.

1. an explicit mapping whose name is the method's name byte for byte;
2. a near miss (same name once case, accents, spacing and invisible characters are ignored,
   but not exactly): a ledger-side error, because a silent guess would post to the wrong
   account;
3. the default links, recognised from whole words of the name (case, accents, spacing ignored);
4. otherwise 471000, posted with a warning naming the method so that it can be mapped.

An explicit mapping to an account that cannot hold a payment is a ledger-side error too.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from toporder_sync.core import accounts
from toporder_sync.core.errors import Finding, ledger_error, warning
from toporder_sync.core.model import ClientSettings, MatchRule, MethodMatch

# Default links, in the order of accounting-rules.md.
DEFAULT_LINKS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("511500", ("carte bancaire", "cb", "carte bleue", "visa", "mastercard", "amex",
                "american express", "tpe", "sans contact")),
    ("530000", ("espèces", "especes", "cash", "liquide")),
    ("511200", ("chèque", "cheque")),
    ("511800", ("ticket restaurant", "titre restaurant", "ticket resto", "swile", "edenred",
                "conecs", "up déjeuner", "pluxee", "sodexo", "bimpli", "apetiz")),
    ("580000", ("virement",)),
    ("419100", ("carte cadeau", "bon cadeau", "avoir")),
    ("467100", ("uber eats", "deliveroo", "just eat")),
)


def _fold(text: str) -> str:
    """Lower case, no accents, no invisible (format) characters; spaces kept as separators."""
    decomposed = unicodedata.normalize("NFKD", text)
    kept = []
    for char in decomposed:
        category = unicodedata.category(char)
        if category == "Mn" or category == "Cf":  # accents; zero-width and BOM characters
            continue
        kept.append(" " if char.isspace() or not char.isalnum() else char)
    return "".join(kept).casefold()


def words(name: str) -> tuple[str, ...]:
    """The folded words of a name (``_fold``): what matching compares."""
    return tuple(_fold(name).split())


def near_key(name: str) -> str:
    """The form under which two names are a near miss: case, accents and spacing ignored."""
    return "".join(words(name))


# Keyword (as joined words) -> (account, keyword length, table order); built once, read-only.
_KEYWORDS: Mapping[str, tuple[str, int]] = MappingProxyType(
    {near_key(k): (account, order) for order, (account, ks) in enumerate(DEFAULT_LINKS) for k in ks}
)


def default_account(name: str) -> str | None:
    """The default link of a name: the longest keyword found as a run of whole words.

    A keyword matches a contiguous run of the name's words, spaces ignored inside the run
    ("UberEats" and "Uber Eats" both match "uber eats"; "CB" matches, "Lydia" does not).
    """
    tokens = words(name)
    best: tuple[int, int, str] | None = None  # (-length, table order, account)
    for start in range(len(tokens)):
        joined = ""
        for token in tokens[start:]:
            joined += token
            hit = _KEYWORDS.get(joined)
            if hit is not None:
                candidate = (-len(joined), hit[1], hit[0])
                best = candidate if best is None else min(best, candidate)
    return best[2] if best else None


@dataclass(frozen=True, slots=True)
class MappingResult:
    matches: tuple[MethodMatch, ...]
    findings: tuple[Finding, ...]

    def account_of(self, method: str) -> str:
        for match in self.matches:
            if match.method == method:
                return match.account
        raise KeyError(method)


def match_method(method: str, settings: ClientSettings) -> tuple[MethodMatch, Finding | None]:
    """Where one method goes, and the finding it carries (error, warning or none)."""
    mappings = settings.mappings
    if method in mappings:
        account = mappings[method]
        problem = accounts.account_problem(account, "method")
        if problem:
            return (
                MethodMatch(method, account, MatchRule.EXACT, method),
                ledger_error("mapping_account_invalid", f"mapping[{method!r}]",
                             f"mapping of {method!r} is not valid: {problem}"),
            )
        return MethodMatch(method, account, MatchRule.EXACT, method), None
    key = near_key(method)
    for name, account in mappings.items():
        if near_key(name) == key:
            return (
                MethodMatch(method, account, MatchRule.NEAR_MISS, name),
                ledger_error(
                    "mapping_near_miss", f"payments[{method!r}]",
                    f"mapping {name!r} does not match method {method!r} exactly: rename the "
                    f"mapping to {method!r} (toporder-sync mapping set CLIENT {method!r} "
                    "ACCOUNT)",
                ),
            )
    other = settings.account_overrides.get(accounts.OTHER_METHODS,
                                           accounts.FIXED_ACCOUNTS[accounts.OTHER_METHODS])
    default = default_account(method)
    if default is not None:
        return MethodMatch(method, default, MatchRule.DEFAULT), None
    return (
        MethodMatch(method, other, MatchRule.FALLBACK),
        warning("method_unmapped", f"payments[{method!r}]",
                f"payment method {method!r} is not recognised: posted to {other} "
                f"({accounts.account_label(other)}); map it with "
                f"toporder-sync mapping set CLIENT {method!r} ACCOUNT"),
    )


def match_methods(methods: Iterable[str], settings: ClientSettings) -> MappingResult:
    matches: list[MethodMatch] = []
    findings: list[Finding] = []
    for method in dict.fromkeys(methods):
        match, finding = match_method(method, settings)
        matches.append(match)
        if finding is not None:
            findings.append(finding)
    return MappingResult(tuple(matches), tuple(findings))

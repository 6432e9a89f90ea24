"""What became of a client-day, as one typed value, and everything derived from it by one table.

An ``Outcome`` is the verdict of one run of a client-day. Its row in ``_TABLE`` gives, once and
for all, the Prefect state the run ends in (type and name), who must act, the exit code of
``toporder-sync run``, the line a fleet summary counts it on and the tag a run needing action
carries. Nothing else in the project spells a state name or an exit code.

State types are chosen for what a person reads at a glance in the Prefect UI:

* ``COMPLETED`` (green): the day is done, nobody has anything to do (posted, nothing to post).
* ``FAILED`` (red): somebody must act: Toporder (a POS data error, a missing closure), the
  accountant (a mapping error) or the data team (a day still unavailable after its retries,
  an unexpected error).
* ``CANCELLED`` (grey): nothing was done and nobody need act now: the closure is awaited
  (a later sweep runs the day again), another run holds the day, the day must not be posted
  (before activation), or an earlier day of the client stopped it (``Not run``; the data team
  reruns the catch-up).

Pure: no Prefect, no database.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum


class Who(StrEnum):
    """Who must act on a client-day; the value is how a person is named in a message."""

    NOBODY = "nobody"
    TOPORDER = "Toporder"
    ACCOUNTANT = "the accountant"
    DATA_TEAM = "the data team"

    @property
    def tag(self) -> str:
        """The run tag of a day this one must act on (``needs:toporder``…)."""
        return "needs:" + {Who.NOBODY: "nobody", Who.TOPORDER: "toporder",
                           Who.ACCOUNTANT: "accountant", Who.DATA_TEAM: "data-team"}[self]

    @property
    def short(self) -> str:
        """How a fleet run's state name counts the days this one must act on."""
        return {Who.NOBODY: "", Who.TOPORDER: "for Toporder", Who.ACCOUNTANT: "mapping",
                Who.DATA_TEAM: "for the data team"}[self]


# Exit codes of ``toporder-sync`` (docs/cli.md), one per outcome of ``run``/``rerun``:
# 0 done (posted, nothing to post); 1 flagged (POS data or mapping error; for ``receive``, a
# closure refused); 2 bad usage or configuration; 3 refused (before activation, not over yet);
# 4 missing closure; 5 waiting for the closure; 6 already running (another run holds the day);
# 7 internal error (a bug: the data team must look; any command); 8 unavailable (the ledger,
# Toporder or Pennylane did not answer, after retries: try again later).
EXIT_DONE, EXIT_FLAGGED, EXIT_USAGE, EXIT_REFUSED, EXIT_MISSING = 0, 1, 2, 3, 4
EXIT_WAITING, EXIT_ALREADY_RUNNING, EXIT_INTERNAL, EXIT_UNAVAILABLE = 5, 6, 7, 8

# The tag every run needing somebody carries, beside its ``needs:<who>`` tag.
NEEDS_ACTION_TAG = "needs-action"
# The tag of every run of the project (flow runs of client-days, fleet runs).
PROJECT_TAG = "toporder-sync"
# The tag a run needing action gets instead of its ``needs`` tags once its day is settled.
RESOLVED_TAG = "resolved"


@dataclass(frozen=True, slots=True)
class _Row:
    state_type: str
    state_name: str
    who: Who
    exit_code: int
    kind: str  # the line of a fleet summary it counts on
    ledger_state: str | None  # the day's state in the ledger (None: the run recorded nothing)


class Outcome(Enum):
    """The verdict of one run of a client-day."""

    POSTED = _Row("COMPLETED", "Posted", Who.NOBODY, EXIT_DONE, "posted", "posted")
    POSTED_WITH_WARNINGS = _Row("COMPLETED", "Posted with warnings", Who.NOBODY, EXIT_DONE,
                                "posted", "posted")
    NOTHING_TO_POST = _Row("COMPLETED", "Nothing to post", Who.NOBODY, EXIT_DONE,
                           "nothing to post", "empty")
    WAITING = _Row("CANCELLED", "Waiting for closure", Who.NOBODY, EXIT_WAITING, "waiting",
                   "waiting")
    ALREADY_RUNNING = _Row("CANCELLED", "Already running", Who.NOBODY, EXIT_ALREADY_RUNNING,
                           "already running", None)
    REFUSED = _Row("CANCELLED", "Refused", Who.NOBODY, EXIT_REFUSED, "refused", "refused")
    NOT_RUN = _Row("CANCELLED", "Not run", Who.DATA_TEAM, EXIT_INTERNAL, "not run", None)
    POS_DATA_ERROR = _Row("FAILED", "POS data error", Who.TOPORDER, EXIT_FLAGGED, "flagged",
                          "flagged")
    MAPPING_ERROR = _Row("FAILED", "Mapping error", Who.ACCOUNTANT, EXIT_FLAGGED, "flagged",
                         "flagged")
    MISSING = _Row("FAILED", "Missing closure", Who.TOPORDER, EXIT_MISSING, "missing",
                   "missing")
    STILL_UNAVAILABLE = _Row("FAILED", "Still unavailable", Who.DATA_TEAM, EXIT_UNAVAILABLE,
                             "error", None)
    # Recorded in the ledger as the day state ``error``, with the error's type and message.
    UNEXPECTED_ERROR = _Row("FAILED", "Unexpected error", Who.DATA_TEAM, EXIT_INTERNAL, "error",
                            "error")

    @property
    def state_type(self) -> str:
        """The Prefect state type's value (``COMPLETED``, ``FAILED``, ``CANCELLED``)."""
        return self.value.state_type

    @property
    def state_name(self) -> str:
        return self.value.state_name

    @property
    def who(self) -> Who:
        return self.value.who

    @property
    def exit_code(self) -> int:
        return self.value.exit_code

    @property
    def kind(self) -> str:
        return self.value.kind

    @property
    def needs_action(self) -> bool:
        return self.who is not Who.NOBODY

    @property
    def done(self) -> bool:
        """The day is settled and nobody must act (posted, or nothing to post)."""
        return self.state_type == "COMPLETED"

    @property
    def tags(self) -> tuple[str, ...]:
        """The tags a run ending in this outcome adds: none unless somebody must act."""
        return (NEEDS_ACTION_TAG, self.who.tag) if self.needs_action else ()

    @classmethod
    def of_day(cls, state: str, category: str | None, warned: bool) -> Outcome | None:
        """The outcome a day recorded in the ledger stands for (``state``, its error
        ``category`` value, whether it has warnings); None for a day not run yet
        (``received``, ``not_run``)."""
        if state == "posted":
            return Outcome.POSTED_WITH_WARNINGS if warned else Outcome.POSTED
        if state == "flagged":
            return Outcome.MAPPING_ERROR if category == "ledger" else Outcome.POS_DATA_ERROR
        return _BY_LEDGER_STATE.get(state)


_BY_LEDGER_STATE: Mapping[str, Outcome] = {
    o.value.ledger_state: o for o in (Outcome.NOTHING_TO_POST, Outcome.WAITING, Outcome.REFUSED,
                                      Outcome.MISSING, Outcome.UNEXPECTED_ERROR)
    if o.value.ledger_state is not None
}

# The lines of a summary, in the order it lists them, and the same most pressing first: what
# a run of several client-days says of them as a whole.
KINDS: tuple[str, ...] = ("posted", "nothing to post", "flagged", "missing", "error",
                          "not run", "refused", "waiting", "already running")
PRESSING: tuple[Outcome, ...] = (
    Outcome.UNEXPECTED_ERROR, Outcome.STILL_UNAVAILABLE, Outcome.POS_DATA_ERROR,
    Outcome.MAPPING_ERROR, Outcome.MISSING, Outcome.NOT_RUN, Outcome.REFUSED,
    Outcome.ALREADY_RUNNING, Outcome.WAITING, Outcome.POSTED_WITH_WARNINGS, Outcome.POSTED,
    Outcome.NOTHING_TO_POST,
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a run of many client-days (a dispatch, a catch-up) ends in: its state's type and
    name, counting the days to look at per who must act."""

    state_type: str
    state_name: str


def fleet_verdict(outcomes: Iterable[Outcome]) -> Verdict:
    """The state of a run of many client-days, by the table's colours: ``FAILED`` named after
    the days each one must act on (``3 for Toporder, 1 mapping``) when any day needs somebody;
    else ``CANCELLED`` named after the days not done (``2 waiting``) when there are some;
    ``COMPLETED`` ``All posted`` when every day is done."""
    counted = Counter(outcomes)
    needs = Counter[Who]()
    left = Counter[str]()
    for outcome, n in counted.items():
        needs[outcome.who] += n
        if not outcome.done:
            left[outcome.kind] += n
    acting = [who for who in (Who.TOPORDER, Who.ACCOUNTANT, Who.DATA_TEAM) if needs[who]]
    if acting:
        return Verdict("FAILED", ", ".join(f"{needs[who]} {who.short}" for who in acting))
    if left:
        return Verdict("CANCELLED", ", ".join(f"{left[kind]} {kind}" for kind in KINDS
                                              if left[kind]))
    return Verdict("COMPLETED", "All posted")


def slug(text: str) -> str:
    """Text as Prefect artifact keys allow it: lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")

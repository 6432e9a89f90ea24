"""Flagged days → ``day.flagged`` notifications: written with the day, delivered signed.

On SQLite and PostgreSQL: which day states are notified, the outbox row living and dying with
the flag's transaction, event ids across reruns, a client without webhook, the commands
(``clients set-webhook``, ``notifications list|retry``, ``relay --once``) through click's
CliRunner, and the ``relay-outbox`` flow's body, all against the real receiver of test_outbox.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, select
from test_outbox import DAY, T0, Clock, Receiver, Reply, flag_day, receiver, relay, row, webhook

from toporder_sync import notifications, outbox, service
from toporder_sync.cli import main
from toporder_sync.core.errors import (
    Category,
    ConfigurationError,
    ledger_error,
    pos_error,
    warning,
)
from toporder_sync.ledger import clients, days
from toporder_sync.ledger.db import session_scope
from toporder_sync.ledger.tables import DayState, OutboxRow

__all__ = ["receiver", "webhook"]  # fixtures shared with test_outbox


def outbox_rows(engine: Engine) -> list[OutboxRow]:
    with session_scope(engine) as session:
        rows = list(session.scalars(select(OutboxRow).order_by(OutboxRow.id)))
        session.expunge_all()
        return rows


def integration_id(engine: Engine, client_id: str) -> str:
    with session_scope(engine) as session:
        return clients.get_client(session, client_id).integration_id


FINDINGS = (ledger_error("mapping", "payments.method", "'Carte Bleu' looks like 'CB'"),
            pos_error("vat_rate", "vat[0].rate", "rate 19.6 is not in force"),
            warning("tips", "tips", "tip above the card payments"))


@pytest.mark.parametrize(("state", "category"), [
    ("flagged", Category.POS), ("flagged", Category.LEDGER), ("missing", Category.POS),
])
def test_flagged_and_missing_days_are_notified_in_the_outbox(
    engine: Engine, client_id: str, state: DayState, category: Category,
) -> None:
    findings = FINDINGS
    service.flag(engine, client_id, DAY, state=state, error_category=category,
                 findings=findings, closure_id=None, now=T0)

    [message] = outbox_rows(engine)
    integration = integration_id(engine, client_id)
    assert message.event_id == notifications.event_id(integration, DAY, state, 1)
    assert (message.topic, message.client_id, message.business_date, message.status,
            message.attempts, message.next_attempt_at) == (
        "day.flagged", client_id, DAY, "pending", 0, T0)
    assert message.payload == {
        "type": "day.flagged",
        "timestamp": "2026-11-28T05:30:00+00:00",
        "data": {
            "event_id": message.event_id, "client_id": client_id,
            "integration_id": integration, "business_date": "2026-11-27", "state": state,
            "category": category.value, "attempt": 1,
            "errors": [f.as_dict() for f in findings[:2]],
            "warnings": [findings[2].as_dict()],
        },
    }


def test_waiting_refused_and_empty_days_are_not_notified(engine: Engine, client_id: str) -> None:
    states: tuple[DayState, ...] = ("waiting", "refused", "empty")
    for n, state in enumerate(states):
        service.flag(engine, client_id, DAY - timedelta(days=n), state=state,
                     error_category=None, findings=FINDINGS[2:], closure_id=None, now=T0)
    with session_scope(engine) as session:
        recorded = [d.state for d in days.day_statuses(session, client_id)]
    assert sorted(recorded) == sorted(states)
    assert outbox_rows(engine) == []


def test_a_failed_flag_transaction_leaves_no_notification(
    engine: Engine, client_id: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = notifications.enqueue_flagged

    def enqueue_then_fail(*args: Any, **kwargs: Any) -> str | None:
        assert real(*args, **kwargs) is not None  # the row is written in the transaction …
        raise RuntimeError("the transaction dies after the enqueue")

    monkeypatch.setattr(notifications, "enqueue_flagged", enqueue_then_fail)
    with pytest.raises(RuntimeError):
        flag_day(engine, client_id)

    assert outbox_rows(engine) == []  # … and goes with it
    with session_scope(engine) as session:
        assert days.day_statuses(session, client_id) == []


def test_toporder_hears_of_an_alert_once_and_again_only_if_it_changed(
    engine: Engine, client_id: str,
) -> None:
    first = flag_day(engine, client_id)
    # A rerun of the day with the same errors (a sweep, a catch-up): no new message.
    alike = service.flag(engine, client_id, DAY, state="flagged", error_category=Category.POS,
                         findings=(pos_error("balanced", "payments",
                                             "debit 1525.00 ≠ credit 1525.50"),),
                         closure_id=None, now=T0 + timedelta(hours=1))
    assert alike is not None and alike.change == "repeated"
    assert [r.event_id for r in outbox_rows(engine)] == [first]
    # A rerun with other errors is a new alert: a new message, its attempt the third.
    changed = service.flag(engine, client_id, DAY, state="flagged", error_category=Category.POS,
                           findings=FINDINGS[1:], closure_id=None, now=T0 + timedelta(hours=2))
    assert changed is not None and changed.change == "raised"
    integration = integration_id(engine, client_id)
    third = notifications.event_id(integration, DAY, "flagged", 3)
    assert [r.event_id for r in outbox_rows(engine)] == [first, third]

    # The same recording replayed (same attempt): the same event id, one message.
    with session_scope(engine) as session:
        again = notifications.enqueue_flagged(
            session, client_id, DAY, state="flagged", category=Category.POS, findings=(),
            attempt=3, now=T0)
    assert again == third
    assert [r.event_id for r in outbox_rows(engine)] == [first, third]


def test_an_alert_resolved_is_raised_again_by_the_same_errors(
    engine: Engine, client_id: str,
) -> None:
    """Posted (here: nothing to post) after an alert, then flagged alike: a new alert."""
    flag_day(engine, client_id)
    resolved = service.flag(engine, client_id, DAY, state="empty", error_category=None,
                            findings=(), closure_id=None, now=T0 + timedelta(hours=1))
    assert resolved is not None and resolved.change == "resolved"
    assert resolved.alert.outcome == "POS_DATA_ERROR"
    flag_day(engine, client_id, now=T0 + timedelta(hours=2))
    assert len(outbox_rows(engine)) == 2


def test_without_webhook_messages_wait_and_go_once_configured(
    engine: Engine, client_id: str, receiver: Receiver,
) -> None:
    event = flag_day(engine, client_id)
    clock = Clock()

    assert relay(engine, clock) == outbox.RelayReport(claimed=1, deferred=1)
    waiting = row(engine, event)
    assert (waiting.status, waiting.attempts) == ("pending", 0)  # not an attempt spent
    assert "set-webhook" in (waiting.last_error or "")
    assert waiting.next_attempt_at == T0 + outbox.DEFERRED_WAIT

    with session_scope(engine) as session:
        receiver.secret = notifications.set_webhook(session, client_id, receiver.url, now=T0)
    assert row(engine, event).next_attempt_at == T0  # woken
    assert relay(engine, clock).sent == 1
    assert list(receiver.accepted) == [event]


def test_a_wrong_signature_is_refused_by_the_receiver_and_dead_lettered(
    engine: Engine, client_id: str, webhook: Receiver,
) -> None:
    event = flag_day(engine, client_id)
    with session_scope(engine) as session:  # a new secret Toporder was not given
        assert notifications.set_webhook(session, client_id, webhook.url, now=T0,
                                         new_secret=True)
    assert relay(engine, Clock()).dead == 1
    assert webhook.bad_signatures == 1 and webhook.accepted == {}
    assert "HTTP 401" in (row(engine, event).last_error or "")


@pytest.mark.parametrize("url", ["http://toporder.example/hooks", "ftp://127.0.0.1/x",
                                 "https:///no-host"])
def test_webhook_urls_are_https_or_local(url: str) -> None:
    with pytest.raises(ConfigurationError):
        notifications.check_url(url)


@pytest.mark.parametrize("url", ["https://hooks.toporder.example/v1/x?token=1",
                                 "http://127.0.0.1:8080/x", "http://localhost/x",
                                 "http://[::1]:81/"])
def test_accepted_webhook_urls(url: str) -> None:
    assert notifications.check_url(url) == url


@pytest.mark.parametrize(("header", "wait"), [
    ("120", timedelta(minutes=2)),
    ("Sat, 28 Nov 2026 06:30:00 GMT", timedelta(hours=1)),
    ("Sat, 28 Nov 2026 04:00:00 GMT", timedelta(0)),
    ("soon", None),
])
def test_retry_after_in_seconds_or_as_a_date(header: str, wait: timedelta | None) -> None:
    response = httpx.Response(503, headers={"Retry-After": header})
    assert notifications.retry_after(response, now=T0) == wait


# --- the commands ----------------------------------------------------------------------------

@pytest.fixture
def cli(ledger_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("TOPORDER_SYNC_DATABASE_URL", ledger_url)
    yield CliRunner()


def invoke(cli: CliRunner, *args: str, code: int = 0) -> Result:
    result = cli.invoke(main, list(args))
    assert result.exit_code == code, (result.output, result.exception)
    return result


def test_the_commands_configure_list_relay_and_retry(
    cli: CliRunner, engine: Engine, client_id: str, receiver: Receiver,
) -> None:
    dead = flag_day(engine, client_id, date(2026, 11, 20))
    with session_scope(engine) as session:
        session.execute(OutboxRow.__table__.update().where(OutboxRow.event_id == dead)
                        .values(status="dead", attempts=8, last_error="HTTP 503"))
    pending = flag_day(engine, client_id)

    issued = invoke(cli, "clients", "set-webhook", client_id, receiver.url)
    receiver.secret = issued.output.splitlines()[-1]
    assert receiver.secret.startswith("whsec_")
    again = invoke(cli, "clients", "set-webhook", client_id, receiver.url)
    assert "unchanged" in again.output and receiver.secret not in again.output
    invoke(cli, "clients", "set-webhook", client_id, "http://toporder.example/", code=2)
    invoke(cli, "clients", "set-webhook", "nobody", receiver.url, code=3)

    listed = json.loads(invoke(cli, "notifications", "list", "--json").output)
    assert [(m["event_id"], m["status"]) for m in listed] == [(pending, "pending"),
                                                             (dead, "dead")]
    assert listed[0]["payload"]["data"]["errors"][0]["rule"] == "balanced"
    table = invoke(cli, "notifications", "list", "--status", "dead").output
    assert dead in table and pending not in table and "HTTP 503" in table
    assert invoke(cli, "notifications", "list", "--client", "nobody").output.strip() == "(none)"

    relayed = invoke(cli, "relay", "--once")
    assert "1 due: 1 sent" in relayed.output
    assert list(receiver.accepted) == [pending]

    invoke(cli, "notifications", "retry", code=2)
    invoke(cli, "notifications", "retry", dead, "msg_unknown", code=3)
    assert row(engine, dead).status == "dead"  # nothing changed
    assert f"{dead}: pending" in invoke(cli, "notifications", "retry", "--dead").output
    assert "1 due: 1 sent" in invoke(cli, "relay", "--once").output
    assert set(receiver.accepted) == {pending, dead}

    # Sent again by hand: the receiver sees the same webhook-id and drops it.
    invoke(cli, "notifications", "retry", pending)
    invoke(cli, "relay", "--once")
    assert receiver.count(pending) == 2 and len(receiver.accepted) == 2
    statuses = {m["status"] for m in json.loads(
        invoke(cli, "notifications", "list", "--json", "--client", client_id).output)}
    assert statuses == {"sent"}


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_the_relay_flow_delivers_the_due_messages(
    cli: CliRunner, engine: Engine, client_id: str, webhook: Receiver,
) -> None:
    # The flow's body, without Prefect's orchestration; the relay itself is tested on both
    # backends above.
    from toporder_sync.flows.relay import relay_outbox

    flag_day(engine, client_id, now=datetime.now(UTC) - timedelta(minutes=1))
    webhook.script.append(Reply(204))
    state = asyncio.run(relay_outbox.fn())
    assert relay_outbox.name == "relay-outbox"
    assert state.name == "Relayed" and "1 sent" in (state.message or "")
    assert len(webhook.accepted) == 1

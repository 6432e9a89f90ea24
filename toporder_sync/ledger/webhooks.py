"""The ``webhook-id`` of each push a client's sender made, with the SHA-256 of its body.

Standard Webhooks gives a message one id, the same on every delivery of it. The receiver
records the id in the transaction that stores the closure (``service.receive``), so that an id
only ever comes back with the body it first came with: an identical replay is a resend, another
body under a used id is refused (``WebhookIdReused``), and a refused push stores nothing, its
id included. The primary key ``(client_id, webhook_id)`` decides between racing pushes of one
id, on SQLite and PostgreSQL alike: exactly one records it, the others see its body once it
commits. Nothing here commits: the caller owns the transaction.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from toporder_sync.core.errors import ToporderSyncError
from toporder_sync.ledger.db import insert_for
from toporder_sync.ledger.tables import WebhookMessageRow


class WebhookIdReused(ToporderSyncError):
    """A ``webhook-id`` the client's sender already used for another body."""


def record_message(session: Session, client_id: str, webhook_id: str, *, sha256: str,
                   now: datetime) -> bool:
    """Record that ``client_id`` sent the body of digest ``sha256`` as message ``webhook_id``.

    True: a new id. False: the id again with the same body (a replay: nothing written).
    ``WebhookIdReused``: the id again with another body; the caller's transaction must then
    store nothing (raising out of ``session_scope`` rolls it back).
    """
    # ON CONFLICT rather than look-then-insert: a racing push of the same id waits for the
    # first one's transaction, then inserts nothing, and the select below reads its row.
    inserted = session.scalar(
        insert_for(session, WebhookMessageRow)
        .values(client_id=client_id, webhook_id=webhook_id, sha256=sha256, received_at=now)
        .on_conflict_do_nothing(index_elements=["client_id", "webhook_id"])
        .returning(WebhookMessageRow.webhook_id)
    )
    if inserted is not None:
        return True
    first = session.execute(
        select(WebhookMessageRow.sha256).where(WebhookMessageRow.client_id == client_id,
                                               WebhookMessageRow.webhook_id == webhook_id)
    ).scalar_one()
    if first != sha256:
        raise WebhookIdReused(f"webhook-id {webhook_id!r} was already received with another "
                              "body; nothing stored: send a new message with a new id")
    return False

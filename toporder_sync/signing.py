"""Standard Webhooks signatures of HTTP bodies, in both directions, over the ``standardwebhooks``
library.

Toporder signs the closures it pushes to the receiver; we sign the error notifications we send
to Toporder. Both use the scheme of https://www.standardwebhooks.com: the signed content is
``{id}.{timestamp}.{body}`` (the raw body bytes), the headers are ``webhook-id``,
``webhook-timestamp`` (Unix seconds) and ``webhook-signature`` (``v1,<base64 digest>``, several
separated by spaces while a key is rotated). A secret is ``whsec_`` + base64 of 32 random bytes.
The library's ``Webhook.sign`` makes every signature; a signature is checked in constant time,
and refused outside ``TOLERANCE`` around now (replays of an old request fail even with a valid
signature).

This module adds what the library leaves open, so that every caller gets the same answer:

* The headers are read strictly, before any signature is computed, so that what is signed is
  exactly what the headers say and nothing malformed reaches the arithmetic: ``webhook-id`` is 1
  to ``MAX_ID_LENGTH`` printable ASCII characters without spaces (the ledger's column);
  ``webhook-timestamp`` 1 to ``MAX_TIMESTAMP_DIGITS`` ASCII digits, without sign, spaces,
  underscores or leading zero (the form ``sign`` writes: ``str(int(t)) == t``); and
  ``webhook-signature`` at most ``MAX_SIGNATURE_LENGTH`` printable ASCII characters, signatures
  separated by single spaces. Anything else is a ``SignatureError``, like a wrong signature.
* The replay window is measured against the caller's clock (``now``): ``Webhook.verify`` reads
  the wall clock and a fixed window, which neither the simulator's clock nor the tests' fixed
  dates could use.
* A secret must carry its ``whsec_`` prefix and be strict base64 (the library would skip stray
  characters and accept a bare key): a mistyped secret fails loudly rather than signing with
  another key.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from toporder_sync.core.errors import ToporderSyncError

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
# A signed request older or newer than this (seconds) is refused, whatever its signature: the
# specification's recommended window.
TOLERANCE = 300
# The longest id the ledger records (``webhook_messages.webhook_id``).
MAX_ID_LENGTH = 128
# Unix seconds until the year 33658: a bound that keeps any timestamp a float holds exactly.
MAX_TIMESTAMP_DIGITS = 12
# Room for a dozen signatures while keys rotate (one ``v1,`` signature is 47 characters).
MAX_SIGNATURE_LENGTH = 1024

_ID = re.compile(rf"[\x21-\x7e]{{1,{MAX_ID_LENGTH}}}")
_TIMESTAMP = re.compile(rf"[1-9][0-9]{{0,{MAX_TIMESTAMP_DIGITS - 1}}}")
_SIGNATURES = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")


class SignatureError(ToporderSyncError):
    """A request whose signature, timestamp or headers do not check out."""


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _webhook(secret: str) -> Webhook:
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a signing secret starts with 'whsec_'")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error:
        raise ValueError("a signing secret is 'whsec_' followed by base64") from None
    if not key:
        raise ValueError("a signing secret is 'whsec_' followed by base64")
    return Webhook(key)


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,...`` signature of ``body`` sent as ``message_id`` at Unix time ``timestamp``.

    A timestamp no date can hold (past the year 9999) is a ValueError: ``verify`` refuses such
    a request for its clock before it computes any signature.
    """
    try:
        sent = datetime.fromtimestamp(timestamp, UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"timestamp {timestamp} is out of the range of dates") from None
    return _webhook(secret).sign(message_id, sent, body)


def sign(secret: str, message_id: str, body: bytes, *, now: datetime) -> dict[str, str]:
    """The three headers that authenticate ``body`` sent as message ``message_id`` at ``now``."""
    timestamp = int(now.timestamp())
    return {ID_HEADER: message_id, TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: signature(secret, message_id, timestamp, body)}


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, now: datetime,
           tolerance: int = TOLERANCE) -> str:
    """Check the headers of a signed request; return its message id, or raise SignatureError.

    ``headers`` is looked up with lowercase names (HTTP header names are case-insensitive:
    pass a case-insensitive mapping or lowercase the keys).
    """
    message_id = headers.get(ID_HEADER)
    stamp = headers.get(TIMESTAMP_HEADER)
    offered = headers.get(SIGNATURE_HEADER)
    if not message_id or not stamp or not offered:
        raise SignatureError(f"missing header: {ID_HEADER}, {TIMESTAMP_HEADER} and "
                             f"{SIGNATURE_HEADER} are required")
    # fullmatch, as "$" would let a trailing newline through.
    if not _ID.fullmatch(message_id):
        raise SignatureError(f"malformed {ID_HEADER}: 1 to {MAX_ID_LENGTH} printable ASCII "
                             "characters, no space")
    if not _TIMESTAMP.fullmatch(stamp):
        raise SignatureError(f"malformed {TIMESTAMP_HEADER}: not a Unix time in seconds "
                             f"(1 to {MAX_TIMESTAMP_DIGITS} ASCII digits, no leading zero)")
    if len(offered) > MAX_SIGNATURE_LENGTH or not _SIGNATURES.fullmatch(offered):
        raise SignatureError(f"malformed {SIGNATURE_HEADER}: at most {MAX_SIGNATURE_LENGTH} "
                             "printable ASCII characters, signatures separated by a space")
    timestamp = int(stamp)
    if abs(now.timestamp() - timestamp) > tolerance:
        raise SignatureError(f"{TIMESTAMP_HEADER} is more than {tolerance} s away from now "
                             "(a replay, or a clock out of step)")
    expected = signature(secret, message_id, timestamp, body).encode()
    # Compared as bytes, like the library's own verify: constant time, whatever the characters.
    if not any(hmac.compare_digest(expected, candidate.encode())
               for candidate in offered.split(" ")):
        raise SignatureError(f"{SIGNATURE_HEADER} does not match the body")
    return message_id

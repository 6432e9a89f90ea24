"""Standard Webhooks signatures: round trip, tampering, replay window, key rotation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from toporder_sync import signing

NOW = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # noqa: S105 (the specification's example key)


def test_known_vector() -> None:
    # The example of the Standard Webhooks specification.
    body = b'{"test": 2432232314}'
    assert signing.signature(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_round_trip_and_tampering() -> None:
    secret = signing.new_secret()
    headers = signing.sign(secret, "evt_1", b"{}", now=NOW)
    assert signing.verify(secret, headers, b"{}", now=NOW) == "evt_1"
    with pytest.raises(signing.SignatureError, match="does not match"):
        signing.verify(secret, headers, b"{ }", now=NOW)
    with pytest.raises(signing.SignatureError, match="does not match"):
        signing.verify(signing.new_secret(), headers, b"{}", now=NOW)
    with pytest.raises(signing.SignatureError, match="does not match"):
        signing.verify(secret, {**headers, signing.ID_HEADER: "evt_2"}, b"{}", now=NOW)


def test_replay_window() -> None:
    secret = signing.new_secret()
    headers = signing.sign(secret, "evt_1", b"{}", now=NOW)
    assert signing.verify(secret, headers, b"{}", now=NOW + timedelta(seconds=300)) == "evt_1"
    with pytest.raises(signing.SignatureError, match="away from now"):
        signing.verify(secret, headers, b"{}", now=NOW + timedelta(seconds=301))
    with pytest.raises(signing.SignatureError, match="away from now"):
        signing.verify(secret, headers, b"{}", now=NOW - timedelta(seconds=301))


def test_missing_headers_and_rotation() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    headers = signing.sign(old, "evt_1", b"x", now=NOW)
    both = {**headers, signing.SIGNATURE_HEADER:
            f"{signing.sign(new, 'evt_1', b'x', now=NOW)[signing.SIGNATURE_HEADER]} "
            f"{headers[signing.SIGNATURE_HEADER]}"}
    assert signing.verify(old, both, b"x", now=NOW) == "evt_1"
    assert signing.verify(new, both, b"x", now=NOW) == "evt_1"
    with pytest.raises(signing.SignatureError, match="missing header"):
        signing.verify(old, {signing.ID_HEADER: "evt_1"}, b"x", now=NOW)
    with pytest.raises(signing.SignatureError, match="not a Unix time"):
        signing.verify(old, {**headers, signing.TIMESTAMP_HEADER: "soon"}, b"x", now=NOW)

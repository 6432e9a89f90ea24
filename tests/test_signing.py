"""Standard Webhooks signatures: round trip, tampering, replay window, key rotation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook

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


STAMP = str(int(NOW.timestamp()))


@pytest.mark.parametrize(("name", "value"), [
    (signing.TIMESTAMP_HEADER, f" {STAMP} "),
    (signing.TIMESTAMP_HEADER, "+" + STAMP),
    (signing.TIMESTAMP_HEADER, f"{STAMP[:4]}_{STAMP[4:]}"),
    (signing.TIMESTAMP_HEADER, "0" + STAMP),
    (signing.TIMESTAMP_HEADER, "".join(chr(0x660 + int(d)) for d in STAMP)),  # Arabic-Indic
    (signing.TIMESTAMP_HEADER, STAMP + "\n"),
    (signing.TIMESTAMP_HEADER, "9" * 400),
    (signing.TIMESTAMP_HEADER, "9" * 13),
    (signing.ID_HEADER, "evt 1"),
    (signing.ID_HEADER, "evt_\u00e9"),
    (signing.ID_HEADER, "e" * 129),
    (signing.SIGNATURE_HEADER, "v1,\u00e9"),
    (signing.SIGNATURE_HEADER, "v1,AAAA " * 200),
])
def test_malformed_headers_are_a_signature_error_and_nothing_else(name: str,
                                                                  value: str) -> None:
    """Each would pass the signature check (it signs exactly what the header says), or crash
    it, if its form were not checked first."""
    message = value if name == signing.ID_HEADER else "evt_1"
    headers = signing.sign(SECRET, message, b"{}", now=NOW)
    if name == signing.SIGNATURE_HEADER:
        headers[name] = value + headers[name]
    else:
        headers[name] = value
    with pytest.raises(signing.SignatureError, match="malformed"):
        signing.verify(SECRET, headers, b"{}", now=NOW)


def test_the_longest_well_formed_headers_still_verify() -> None:
    message = "!" + "~" * (signing.MAX_ID_LENGTH - 1)
    headers = signing.sign(SECRET, message, b"{}", now=NOW)
    rotated = headers[signing.SIGNATURE_HEADER]
    padding = signing.MAX_SIGNATURE_LENGTH - len(rotated) - 1
    headers[signing.SIGNATURE_HEADER] = "v1a," + "A" * (padding - 4) + " " + rotated
    assert len(headers[signing.SIGNATURE_HEADER]) == signing.MAX_SIGNATURE_LENGTH
    assert signing.verify(SECRET, headers, b"{}", now=NOW) == message


def test_known_vector_verifies_and_the_library_accepts_what_we_sign() -> None:
    body = b'{"test": 2432232314}'
    headers = {signing.ID_HEADER: "msg_p5jXN8AQM9LWM0D4loKWxJek",
               signing.TIMESTAMP_HEADER: "1614265330",
               signing.SIGNATURE_HEADER: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}
    sent = datetime.fromtimestamp(1614265330, UTC)
    assert signing.verify(SECRET, headers, body, now=sent) == "msg_p5jXN8AQM9LWM0D4loKWxJek"
    # What we sign, the maintained implementation verifies (at the real time: it reads the
    # wall clock).
    signed = signing.sign(SECRET, "evt_1", body, now=datetime.now(UTC))
    assert Webhook(SECRET).verify(body, signed, json_parse=False) is None


@pytest.mark.parametrize("secret", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!",
                                    "whsec_"])
def test_a_secret_not_in_the_whsec_base64_form_is_refused(secret: str) -> None:
    with pytest.raises(ValueError, match="signing secret"):
        signing.sign(secret, "evt_1", b"{}", now=NOW)

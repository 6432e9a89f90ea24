"""Money: the one place that turns text into amounts, quantizes them and formats them.

Every amount is a ``decimal.Decimal`` with two decimals, from the JSON text to the database
column (``Numeric(14, 2)``). A float is never accepted: it is rejected, not coerced, because a
float that reached a money field means a bug upstream (binary floats cannot hold most cents).
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

CENT = Decimal("0.01")
ZERO = Decimal("0.00")

# The closure format's amount grammar (closure-v1.schema.json, $defs/amount): at most two
# decimals, no exponent, no leading zeros, at most 12 integer digits (fits Numeric(14, 2)).
AMOUNT_PATTERN = re.compile(r"^-?(0|[1-9][0-9]{0,11})(\.[0-9]{1,2})?$")
RATE_PATTERN = re.compile(r"^(0|[1-9][0-9]?)(\.[0-9]{1,2})?$")
# No amount reaches this many euros: none of a closure (12 integer digits), nor an entry line
# (the ledger's Numeric(14, 2)).
AMOUNT_LIMIT = Decimal("1000000000000")


class MoneyTypeError(TypeError):
    """A value that is not a Decimal reached a money field (a float, most likely)."""


def parse_amount(text: str) -> Decimal:
    """Parse an amount string of the closure format into a two-decimal ``Decimal``.

    Raises ``ValueError`` when the text does not follow the amount grammar.
    """
    if not isinstance(text, str) or not AMOUNT_PATTERN.match(text):
        raise ValueError(f"{text!r} is not an amount: a decimal string with at most two decimals")
    return Decimal(text).quantize(CENT)


def parse_rate(text: str) -> Decimal:
    """Parse a VAT rate in percent ("10", "5.5") into a ``Decimal``."""
    if not isinstance(text, str) or not RATE_PATTERN.match(text):
        raise ValueError(f"{text!r} is not a VAT rate in percent")
    return Decimal(text)


def require_money(value: object) -> Decimal:
    """Return ``value`` if it is an exact amount in cents; reject floats and sub-cent values."""
    if isinstance(value, bool) or not isinstance(value, Decimal):
        raise MoneyTypeError(f"money must be a Decimal, got {type(value).__name__} {value!r}")
    if not value.is_finite():
        raise MoneyTypeError(f"money must be finite, got {value!r}")
    if value != value.quantize(CENT):
        raise MoneyTypeError(f"money has more than two decimals: {value!r}")
    return value.quantize(CENT)


def cents(value: object) -> int | None:
    """A money value as integer cents (``Decimal("12.30")`` → 1230); ``None`` if it is not one.

    Money is a ``Decimal`` with exactly two decimals (``require_money``'s rule): a float, a
    non-finite value, or ``Decimal("12.3")`` or ``Decimal("12.305")`` has no cents. Integer
    cents are as exact as the ``Decimal`` and add up in vectorized integer arithmetic.
    """
    if type(value) is not Decimal or not value.same_quantum(CENT):
        return None
    return int(value * 100)


def basis_points(rate: Decimal) -> int | None:
    """A VAT rate in percent as integer basis points (``Decimal("5.5")`` → 550).

    ``None`` if the rate has more than two decimals: the closure format allows two, so every
    rate read from a closure has exact basis points, and integer arithmetic on them is exact.
    """
    scaled = rate.scaleb(2)
    if not scaled.is_finite() or scaled != scaled.to_integral_value():
        return None
    return int(scaled)


def from_cents(amount: int) -> Decimal:
    """Integer cents back to a two-decimal ``Decimal`` (1230 → ``Decimal("12.30")``)."""
    return Decimal(amount).scaleb(-2)


def quantize(value: Decimal) -> Decimal:
    """Round a computed amount to the cent (banker's rounding, as VAT computations do)."""
    try:
        return value.quantize(CENT, rounding=ROUND_HALF_EVEN)
    except InvalidOperation as exc:  # pragma: no cover - only for non-finite values
        raise MoneyTypeError(f"cannot quantize {value!r}") from exc


def format_rate(rate: Decimal) -> str:
    """A VAT rate as people write it: 10, 5.5, 2.1 (no trailing zeros)."""
    text = format(rate.normalize(), "f")
    return text


def format_fr(value: Decimal) -> str:
    """French amount for the FEC: decimal comma, no thousands separator, sign only if negative."""
    return format(require_money(value), "f").replace(".", ",")


def format_display(value: Decimal) -> str:
    """Amount for messages: ``1,525.00`` (thousands comma, two decimals)."""
    return f"{require_money(value):,.2f}"

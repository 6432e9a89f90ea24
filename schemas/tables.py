"""The closure's tables as pandera ``DataFrameModel``s, money in ``int64`` cents throughout.

Money is exact and never a float: every money column is ``int64`` cents, exact by its type,
and pandera never coerces (``core.validate`` reports a value that is not whole cents while
converting it, under the ``exact_money`` rule). VAT rates are ``int64`` basis points (5.5 % is
550), exact too, so identity 2 is checked in integer arithmetic. Each check's name is a rule
name that ``core.validate`` turns into a message for a person; the identity numbers refer to
``closure-v1.md``.

The tables carry only the columns their rules read (the rows are named by the frame's index
or rebuilt for the messages, not by text columns); flags are ``boolean`` and text ``str``
columns. Frame checks are ``ignore_na=False``: their columns hold no missing values but where a
check says so, and a missing value there is a failure, not a row to skip.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera import dtypes
from pandera.engines import pandas_engine
from pandera.typing import Series


@pandas_engine.Engine.register_dtype
@dtypes.immutable(init=True)
class Text(pandas_engine.STRING):  # type: ignore[misc]
    """pandas' ``str`` dtype, checked on the column's dtype alone.

    pandera's own ``str`` check also reads the column value by value when the dtype matches,
    and formats a report of the (no) failures on every validation. A ``str`` column can only
    hold strings (or missing values, which ``nullable`` governs), so its dtype says all there
    is to check.
    """

    def check(self, pandera_dtype: Any, data_container: Any = None) -> bool:
        try:
            resolved = pandas_engine.Engine.dtype(pandera_dtype)
        except TypeError:
            return False
        return bool(resolved.type == self.type)


def _values(df: pd.DataFrame, *columns: str) -> list[np.ndarray[Any, Any]]:
    """The columns' values as numpy arrays (``int64`` cents for money columns)."""
    return [df[column].to_numpy() for column in columns]


# The longest method name the contract allows (``closure-v1.schema.json``, ``$defs.method``).
_METHOD_LENGTH = 100


def _lengths_within(series: pd.Series[str], shortest: int, longest: int | None) -> Any:
    """Whether each text's length is within bounds: pandera's ``str_length``, on the Python
    strings of a ``str`` column (``.str.len()`` builds a whole new array first)."""
    lengths = np.fromiter(map(len, series.tolist()), dtype=np.int64, count=len(series))
    within = lengths >= shortest
    return within if longest is None else within & (lengths <= longest)


def _per_row(data: pd.DataFrame | pd.Series, passed: Any) -> pd.Series[bool]:
    """A check's answer: one flag per row of ``data``."""
    return pd.Series(np.asarray(passed, dtype=bool), index=data.index)


class _Strict:
    strict = True
    coerce = False


# pandera's built-in ``ge``, named as the rule a negative amount is reported under:
# ``exact_money``.
_NOT_NEGATIVE = {"min_value": 0, "name": "exact_money", "error": "exact_money"}


def _vat_within_tolerance(net: int, vat: int, rate: int, tickets: int) -> bool:
    """Identity 2 on one line, in exact integers (cents, basis points).

    The VAT the rate gives is ``net × rate / 10 000`` cents; scaled by 10 000 the comparison
    needs no division. It may be off by 0.01 per ticket with a line at the rate (each ticket
    rounds its own VAT); without ticket detail by 1 % of that VAT, never less than 0.01.
    """
    off = abs(vat * 10_000 - net * rate)
    if tickets:
        return off <= 10_000 * tickets
    return off * 100 <= max(1_000_000, abs(net * rate))


class VatLinesTable(pa.DataFrameModel):
    """One line per VAT rate (``sales[]`` or ``refunds[]``), indexed by its place."""

    vat_rate: Series[int] = pa.Field(
        unique=True, description="VAT rate in basis points (5.5 % is 550)"
    )
    net: Series[int] = pa.Field(description="amount excluding VAT, in cents")
    vat: Series[int] = pa.Field(description="VAT amount, in cents")
    gross: Series[int] = pa.Field(description="amount including VAT, in cents")
    tickets: Series[int] = pa.Field(
        ge=0, description="tickets with a line at this rate (0 without ticket detail)"
    )

    class Config(_Strict):
        pass

    @pa.dataframe_check(name="net_plus_vat_equals_gross", ignore_na=False)
    def net_plus_vat_equals_gross(cls, df: pd.DataFrame) -> pd.Series[bool]:
        """Identity 1: net + vat = gross, to the cent."""
        net, vat, gross = _values(df, "net", "vat", "gross")
        return _per_row(df, net + vat == gross)

    @pa.dataframe_check(name="vat_matches_rate", ignore_na=False)
    def vat_matches_rate(cls, df: pd.DataFrame) -> pd.Series[bool]:
        """Identity 2: ±0.01 per ticket at the rate, else ±1 % of the computed VAT (≥ 0.01).

        Python integers, not ``int64``: ``net × rate × 100`` may exceed 2⁶³ for the largest
        amounts the format allows, and the table has a handful of rows.
        """
        columns = (df[name].tolist() for name in ("net", "vat", "vat_rate", "tickets"))
        return _per_row(df, list(map(_vat_within_tolerance, *columns)))


class SalesTable(VatLinesTable):
    """``sales[]``: one line per VAT rate of the day's sales."""


class RefundsTable(VatLinesTable):
    """``refunds[]``: same shape as sales, amounts positive."""

    @pa.check("gross", name="refund_positive")
    def refund_positive(cls, series: pd.Series[int]) -> pd.Series[bool]:
        return _per_row(series, series.to_numpy() >= 0)


class PaymentsTable(pa.DataFrameModel):
    """``payments[]``: one line per payment method, as named in Toporder."""

    method: Series[Text] = pa.Field(unique=True,
                                   description="payment method name, exactly as typed in Toporder")
    amount: Series[int] = pa.Field(description="amount collected through the method, in cents")

    class Config(_Strict):
        pass

    @pa.check("method", name="str_length")
    def method_length(cls, series: pd.Series[str]) -> pd.Series[bool]:
        """1 to 100 characters, as the contract names a method."""
        return _per_row(series, _lengths_within(series, 1, _METHOD_LENGTH))


class TipsTable(pa.DataFrameModel):
    """``tips[]``: tips collected through a method, included in that method's payment."""

    method: Series[Text] = pa.Field(unique=True, description="payment method of the tips")
    amount: Series[int] = pa.Field(
        ge=_NOT_NEGATIVE, description="tips collected, in cents (not negative: reported as "
        "exact_money, the cents being exact by their type)")
    paid_with_method: Series[pd.BooleanDtype] = pa.Field(
        description="the method appears in payments[] with at least this amount"
    )

    class Config(_Strict):
        pass

    @pa.dataframe_check(name="tip_method_paid", ignore_na=False)
    def tip_method_paid(cls, df: pd.DataFrame) -> pd.Series[bool]:
        return _per_row(df, df["paid_with_method"].to_numpy(dtype=bool))


class TicketLinesTable(pa.DataFrameModel):
    """``tickets[].lines[]`` flattened: one row per ticket line (named by its place, as
    ``tickets[3].lines[1]``, its ticket's number read only for a message)."""

    kind: Series[Text] = pa.Field(isin=["sale", "refund", "gift_card", "tip"],
                                 description="sale, refund, gift_card or tip")
    vat_rate: Series[Text] = pa.Field(
        nullable=True, description="VAT rate in percent as written (\"5.5\"), for sale and refund"
    )
    gross: Series[int] = pa.Field(
        ge=_NOT_NEGATIVE, description="amount including VAT in cents, positive for every kind "
        "(not negative: reported as exact_money, the cents being exact by their type)"
    )

    class Config(_Strict):
        pass

    @pa.dataframe_check(name="ticket_line_rate")
    def ticket_line_rate(cls, df: pd.DataFrame) -> pd.Series[bool]:
        """A sale or refund line has a VAT rate; a gift card or tip line has none."""
        kinds, rates = _values(df, "kind", "vat_rate")
        taxed = (kinds == "sale") | (kinds == "refund")
        return _per_row(df, taxed == ~pd.isna(rates))


class TicketPaymentsTable(pa.DataFrameModel):
    """``tickets[].payments[]`` flattened: negative for money handed back.

    Its amounts add up in the tickets' ``payments_total`` and in the reconciliation.
    """

    method: Series[Text] = pa.Field(description="payment method")
    amount: Series[int] = pa.Field(
        description="amount paid in cents (negative: change handed back)"
    )

    class Config(_Strict):
        pass

    @pa.check("method", name="str_length")
    def method_length(cls, series: pd.Series[str]) -> pd.Series[bool]:
        """At least one character: a payment names its method."""
        return _per_row(series, _lengths_within(series, 1, None))


class TicketsTable(pa.DataFrameModel):
    """One row per ticket: its totals, and whether it was closed within the business day."""

    ticket: Series[Text] = pa.Field(unique=True, description="ticket number")
    lines_total: Series[int] = pa.Field(
        description="sale + gift_card + tip − refund lines, in cents"
    )
    payments_total: Series[int] = pa.Field(description="sum of the ticket's payments, in cents")
    in_business_day: Series[pd.BooleanDtype] = pa.Field(
        description="closed between the closure's opened_at and closed_at"
    )

    class Config(_Strict):
        pass

    @pa.dataframe_check(name="ticket_balanced", ignore_na=False)
    def ticket_balanced(cls, df: pd.DataFrame) -> pd.Series[bool]:
        lines_total, payments_total = _values(df, "lines_total", "payments_total")
        return _per_row(df, lines_total == payments_total)

    @pa.dataframe_check(name="ticket_in_business_day", ignore_na=False)
    def ticket_in_business_day(cls, df: pd.DataFrame) -> pd.Series[bool]:
        return _per_row(df, df["in_business_day"].to_numpy(dtype=bool))


class ReconciliationTable(pa.DataFrameModel):
    """Identity 7: the closure's totals against the sums of its tickets, one row per key.

    The index names the key: ``sales['10']``, ``payments['CB']``, ``gift_cards``, ``tips``.
    """

    declared: Series[int] = pa.Field(description="amount declared by the closure, in cents")
    from_tickets: Series[int] = pa.Field(description="sum of the ticket detail, in cents")

    class Config(_Strict):
        pass

    @pa.dataframe_check(name="tickets_match_totals", ignore_na=False)
    def tickets_match_totals(cls, df: pd.DataFrame) -> pd.Series[bool]:
        declared, from_tickets = _values(df, "declared", "from_tickets")
        return _per_row(df, declared == from_tickets)


class TotalsTable(pa.DataFrameModel):
    """One row: the day's totals in cents, for the identities that span tables (4, 5, 8)."""

    payments: Series[int] = pa.Field(description="Σ payments.amount: the entry's debit side")
    sales_gross: Series[int] = pa.Field(description="Σ sales.gross")
    refunds_gross: Series[int] = pa.Field(description="Σ refunds.gross")
    gift_cards_sold: Series[int] = pa.Field(description="gift_cards.sold")
    tips: Series[int] = pa.Field(description="Σ tips.amount")
    period_total: Series[int] = pa.Field(description="grand_total.period")
    cash_expected: Series[pd.Int64Dtype] = pa.Field(
        nullable=True, description="cash_count.expected (<NA> without a cash count)"
    )
    cash_paid: Series[pd.Int64Dtype] = pa.Field(
        nullable=True, description="payments of cash_count.method (<NA> without a cash count)"
    )
    dates_ok: Series[pd.BooleanDtype] = pa.Field(
        description="opened_at on the business day, closed_at after it and within a day"
    )

    class Config(_Strict):
        pass

    @pa.dataframe_check(name="debit_equals_credit", ignore_na=False)
    def debit_equals_credit(cls, df: pd.DataFrame) -> pd.Series[bool]:
        """Identity 4: Σ payments = Σ sales − Σ refunds + gift cards sold + Σ tips."""
        payments, sales, refunds, gift_cards, tips = _values(
            df, "payments", "sales_gross", "refunds_gross", "gift_cards_sold", "tips")
        return _per_row(df, payments == sales - refunds + gift_cards + tips)

    @pa.dataframe_check(name="grand_total_period", ignore_na=False)
    def grand_total_period(cls, df: pd.DataFrame) -> pd.Series[bool]:
        """Identity 5: grand_total.period = Σ sales.gross − Σ refunds.gross."""
        period, sales, refunds = _values(df, "period_total", "sales_gross", "refunds_gross")
        return _per_row(df, period == sales - refunds)

    @pa.dataframe_check(name="cash_count_expected", ignore_na=False)
    def cash_count_expected(cls, df: pd.DataFrame) -> pd.Series[bool]:
        """Identity 8: cash_count.expected = the payment amount of cash_count.method.

        Without a cash count (``<NA>``) there is nothing to compare; a count against no
        payment of its method (``<NA>``) does not match.
        """
        rows = zip(df["cash_expected"].tolist(), df["cash_paid"].tolist(), strict=True)
        return _per_row(df, [pd.isna(expected) or (not pd.isna(paid) and expected == paid)
                             for expected, paid in rows])

    @pa.dataframe_check(name="gift_cards_not_negative", ignore_na=False)
    def gift_cards_not_negative(cls, df: pd.DataFrame) -> pd.Series[bool]:
        return _per_row(df, df["gift_cards_sold"].to_numpy() >= 0)

    @pa.dataframe_check(name="business_day_dates", ignore_na=False)
    def business_day_dates(cls, df: pd.DataFrame) -> pd.Series[bool]:
        return _per_row(df, df["dates_ok"].to_numpy(dtype=bool))


def sales_schema(table: str, rates: frozenset[int]) -> pa.DataFrameSchema:
    """The sales or refunds schema with identity 3: every rate (in basis points) in force."""
    model = SalesTable if table == "sales" else RefundsTable
    schema = model.to_schema()
    column = schema.columns["vat_rate"]
    checks: Iterable[pa.Check] = (
        *column.checks,
        pa.Check.isin(sorted(rates), name="vat_rate_in_force", error="vat_rate_in_force"),
    )
    return schema.update_column("vat_rate", checks=list(checks))

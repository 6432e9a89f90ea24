"""The closure's tables and the entry lines as pandera ``DataFrameModel``s.

Money is exact either way, never a float, and pandera never coerces it. In the sales, refunds
and entry tables (a few rows each) money columns are ``object`` columns of two-decimal
``Decimal``s, checked by ``exact_money``. In the other tables money is ``int64`` cents: exact
by its type, so those tables need no ``exact_money`` check on each value (``core.validate``
reports a value that is not whole cents while converting it) and their identities are
vectorized integer comparisons, which is what keeps validating a thousand ticket lines cheap.
Flags are ``boolean`` and rates text, not ``object`` columns: pandera resolves an ``object``
or numpy ``bool`` dtype slowly on every validation. Each check's name is a rule name that
``core.validate`` turns into a message for a person; the identity numbers refer to
``closure-v1.md``.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from functools import cache
from typing import Annotated, Any

import pandas as pd
import pandera.pandas as pa
from pandera import dtypes
from pandera.engines import pandas_engine
from pandera.typing import Series

CENT = Decimal("0.01")
ZERO = Decimal("0.00")


def _is_money(value: object) -> bool:
    return (
        type(value) is Decimal
        and value.is_finite()
        and value.as_tuple().exponent == -2  # type: ignore[union-attr]
    )


def _money(series: pd.Series[Any]) -> pd.Series[bool]:
    return series.map(_is_money).astype(bool)


def _within(diff: pd.Series[Any], tolerance: pd.Series[Any]) -> pd.Series[bool]:
    return pd.Series(
        [abs(d) <= t for d, t in zip(diff, tolerance, strict=True)], index=diff.index, dtype=bool
    )


@pandas_engine.Engine.register_dtype
@dtypes.immutable(init=True)
class Text(pandas_engine.STRING):  # type: ignore[misc]
    """pandas' ``str`` dtype, checked on the column's dtype alone.

    pandera's own ``str`` check answers value by value even when the dtype matches, and then
    formats a report of the (no) failures on every validation: ten times the cost of the rest
    of a thousand-row column's validation. A ``str`` column can only hold strings (or missing
    values, which ``nullable`` governs), so its dtype says all there is to check.
    """

    def check(self, pandera_dtype: Any, data_container: Any = None) -> bool:
        try:
            resolved = pandas_engine.Engine.dtype(pandera_dtype)
        except TypeError:
            return False
        return bool(resolved.type == self.type)


class _Strict:
    strict = True
    coerce = False


class VatLinesTable(pa.DataFrameModel):
    """One line per VAT rate (``sales[]`` or ``refunds[]``)."""

    vat_rate: Series[object] = pa.Field(unique=True, description="VAT rate in percent (Decimal)")
    net: Series[object] = pa.Field(description="amount excluding VAT")
    vat: Series[object] = pa.Field(description="VAT amount")
    gross: Series[object] = pa.Field(description="amount including VAT")
    tickets: Series[int] = pa.Field(
        ge=0, description="tickets with a line at this rate (0 without ticket detail)"
    )

    class Config(_Strict):
        pass

    @pa.check("net", "vat", "gross", name="exact_money")
    def exact_money(cls, series: pd.Series[Any]) -> pd.Series[bool]:
        return _money(series)

    @pa.dataframe_check(name="net_plus_vat_equals_gross")
    def net_plus_vat_equals_gross(cls, df: pd.DataFrame) -> pd.Series[bool]:
        """Identity 1: net + vat = gross, to the cent."""
        return (df["net"] + df["vat"]) == df["gross"]

    @pa.dataframe_check(name="vat_matches_rate")
    def vat_matches_rate(cls, df: pd.DataFrame) -> pd.Series[bool]:
        """Identity 2: ±0.01 per ticket at the rate, else ±1 % of the computed VAT (≥ 0.01)."""
        computed = df["net"] * df["vat_rate"] / 100
        tolerance = [
            CENT * n if n else max(CENT, abs(c) / 100)
            for n, c in zip(df["tickets"], computed, strict=True)
        ]
        return _within(df["vat"] - computed, pd.Series(tolerance, index=df.index))


class SalesTable(VatLinesTable):
    """``sales[]``: one line per VAT rate of the day's sales."""


class RefundsTable(VatLinesTable):
    """``refunds[]``: same shape as sales, amounts positive."""

    @pa.check("gross", name="refund_positive")
    def refund_positive(cls, series: pd.Series[Any]) -> pd.Series[bool]:
        return series.map(lambda v: _is_money(v) and v >= 0).astype(bool)


class PaymentsTable(pa.DataFrameModel):
    """``payments[]``: one line per payment method, as named in Toporder."""

    method: Series[Text] = pa.Field(unique=True, str_length={"min_value": 1, "max_value": 100},
                                   description="payment method name, exactly as typed in Toporder")
    amount: Series[int] = pa.Field(description="amount collected through the method, in cents")

    class Config(_Strict):
        pass


class TipsTable(pa.DataFrameModel):
    """``tips[]``: tips collected through a method, included in that method's payment."""

    method: Series[Text] = pa.Field(unique=True, description="payment method of the tips")
    amount: Series[int] = pa.Field(description="tips collected, in cents")
    paid_with_method: Series[pd.BooleanDtype] = pa.Field(
        description="the method appears in payments[] with at least this amount"
    )

    class Config(_Strict):
        pass

    @pa.check("amount", name="exact_money")
    def exact_money(cls, series: pd.Series[Any]) -> pd.Series[bool]:
        """Cents are exact by their type; a tip is not negative (reported under this name)."""
        return series >= 0

    @pa.dataframe_check(name="tip_method_paid")
    def tip_method_paid(cls, df: pd.DataFrame) -> pd.Series[bool]:
        return df["paid_with_method"].astype(bool)


class TicketLinesTable(pa.DataFrameModel):
    """``tickets[].lines[]`` flattened: one row per ticket line."""

    ticket: Series[Text] = pa.Field(description="ticket number")
    kind: Series[Text] = pa.Field(isin=["sale", "refund", "gift_card", "tip"],
                                 description="sale, refund, gift_card or tip")
    vat_rate: Series[Text] = pa.Field(
        nullable=True, description="VAT rate in percent as written (\"5.5\"), for sale and refund"
    )
    gross: Series[int] = pa.Field(
        description="amount including VAT in cents, positive for every kind"
    )

    class Config(_Strict):
        pass

    @pa.check("gross", name="exact_money")
    def exact_money(cls, series: pd.Series[Any]) -> pd.Series[bool]:
        """Cents are exact by their type; a line is not negative (reported under this name)."""
        return series >= 0

    @pa.dataframe_check(name="ticket_line_rate")
    def ticket_line_rate(cls, df: pd.DataFrame) -> pd.Series[bool]:
        """A sale or refund line has a VAT rate; a gift card or tip line has none."""
        taxed = df["kind"].isin(["sale", "refund"])
        return taxed == df["vat_rate"].notna()


class TicketPaymentsTable(pa.DataFrameModel):
    """``tickets[].payments[]`` flattened: negative for money handed back."""

    ticket: Series[Text] = pa.Field(description="ticket number")
    method: Series[Text] = pa.Field(str_length={"min_value": 1}, description="payment method")
    amount: Series[int] = pa.Field(
        description="amount paid in cents (negative: change handed back)"
    )

    class Config(_Strict):
        pass


class TicketsTable(pa.DataFrameModel):
    """One row per ticket: its totals and when it was closed."""

    ticket: Series[Text] = pa.Field(unique=True, description="ticket number")
    closed_at: Series[Annotated[pd.DatetimeTZDtype, "us", "UTC"]] = pa.Field(
        description="when the ticket was closed (UTC)"
    )
    lines_total: Series[int] = pa.Field(
        description="sale + gift_card + tip − refund lines, in cents"
    )
    payments_total: Series[int] = pa.Field(description="sum of the ticket's payments, in cents")
    in_business_day: Series[pd.BooleanDtype] = pa.Field(
        description="closed between the closure's opened_at and closed_at"
    )

    class Config(_Strict):
        pass

    @pa.dataframe_check(name="ticket_balanced")
    def ticket_balanced(cls, df: pd.DataFrame) -> pd.Series[bool]:
        return df["lines_total"] == df["payments_total"]

    @pa.dataframe_check(name="ticket_in_business_day")
    def ticket_in_business_day(cls, df: pd.DataFrame) -> pd.Series[bool]:
        return df["in_business_day"].astype(bool)


class ReconciliationTable(pa.DataFrameModel):
    """Identity 7: the closure's totals against the sums of its tickets, one row per key."""

    table: Series[Text] = pa.Field(description="sales, refunds, gift_cards, tips or payments")
    key: Series[Text] = pa.Field(description="VAT rate or payment method ('' for gift cards)")
    declared: Series[int] = pa.Field(description="amount declared by the closure, in cents")
    from_tickets: Series[int] = pa.Field(description="sum of the ticket detail, in cents")

    class Config(_Strict):
        pass

    @pa.dataframe_check(name="tickets_match_totals")
    def tickets_match_totals(cls, df: pd.DataFrame) -> pd.Series[bool]:
        return df["declared"] == df["from_tickets"]


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
    gift_cards_ok: Series[pd.BooleanDtype] = pa.Field(
        description="gift_cards.sold is not negative"
    )
    dates_ok: Series[pd.BooleanDtype] = pa.Field(
        description="opened_at on the business day, closed_at after it and within a day"
    )

    class Config(_Strict):
        pass

    @pa.dataframe_check(name="debit_equals_credit")
    def debit_equals_credit(cls, df: pd.DataFrame) -> pd.Series[bool]:
        """Identity 4: Σ payments = Σ sales − Σ refunds + gift cards sold + Σ tips."""
        credit = df["sales_gross"] - df["refunds_gross"] + df["gift_cards_sold"] + df["tips"]
        return df["payments"] == credit

    @pa.dataframe_check(name="grand_total_period")
    def grand_total_period(cls, df: pd.DataFrame) -> pd.Series[bool]:
        """Identity 5: grand_total.period = Σ sales.gross − Σ refunds.gross."""
        return df["period_total"] == df["sales_gross"] - df["refunds_gross"]

    @pa.dataframe_check(name="cash_count_expected")
    def cash_count_expected(cls, df: pd.DataFrame) -> pd.Series[bool]:
        """Identity 8: cash_count.expected = the payment amount of cash_count.method."""
        matches = (df["cash_expected"] == df["cash_paid"]).fillna(False).astype(bool)
        return df["cash_expected"].isna() | matches

    @pa.dataframe_check(name="gift_cards_not_negative")
    def gift_cards_not_negative(cls, df: pd.DataFrame) -> pd.Series[bool]:
        return df["gift_cards_ok"].astype(bool)

    @pa.dataframe_check(name="business_day_dates")
    def business_day_dates(cls, df: pd.DataFrame) -> pd.Series[bool]:
        return df["dates_ok"].astype(bool)


class EntryLinesTable(pa.DataFrameModel):
    """The lines of a built entry: one side each, never a float, debits equal credits."""

    account: Series[Text] = pa.Field(str_matches=r"^[1-8][0-9]{2,11}$", description="PCG number")
    account_label: Series[Text] = pa.Field(str_length={"min_value": 1}, description="CompteLib")
    label: Series[Text] = pa.Field(str_length={"min_value": 1}, description="line label")
    debit: Series[object] = pa.Field(description="debit amount or 0.00")
    credit: Series[object] = pa.Field(description="credit amount or 0.00")

    class Config(_Strict):
        pass

    @pa.check("debit", "credit", name="exact_money")
    def exact_money(cls, series: pd.Series[Any]) -> pd.Series[bool]:
        return series.map(lambda v: _is_money(v) and v >= 0).astype(bool)

    @pa.dataframe_check(name="one_side_per_line")
    def one_side_per_line(cls, df: pd.DataFrame) -> pd.Series[bool]:
        return (df["debit"] == ZERO) != (df["credit"] == ZERO)

    @pa.dataframe_check(name="entry_balanced")
    def entry_balanced(cls, df: pd.DataFrame) -> bool:
        return bool(sum(df["debit"], ZERO) == sum(df["credit"], ZERO))


@cache
def sales_schema(table: str, rates: frozenset[Decimal]) -> pa.DataFrameSchema:
    """The sales or refunds schema with identity 3: every rate one in force in the territory."""
    model = SalesTable if table == "sales" else RefundsTable
    schema = model.to_schema()
    column = schema.columns["vat_rate"]
    checks: Iterable[pa.Check] = (
        *column.checks,
        pa.Check(lambda s: s.isin(rates), name="vat_rate_in_force"),
    )
    return schema.update_column("vat_rate", checks=list(checks))

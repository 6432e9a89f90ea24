"""Validating a closure: its tables as DataFrames checked by the pandera models, lazily.

``validate_closure`` builds the closure's tables (sales, refunds, payments, tips, ticket lines,
ticket payments, tickets, the ticket reconciliation and the day's totals), validates each with
``lazy=True`` so that the POS learns every problem of a closure at once, and turns every
failure case into a ``Finding`` whose message is written from the offending row. Identities 1–5,
7, 8 and a rate not in force are POS errors; identity 6 (continuity) is a warning.

A table is first put to ``schemas.quick.passes``, which runs the schema's own checks through
pandera's public API and only answers "valid"; a table it does not pass goes to pandera's
``validate(..., lazy=True)``, whose failure cases are the ones reported. The tables carry only
the columns their rules read: money as ``int64`` cents everywhere (exact; a value without exact
cents is reported as ``exact_money`` while converting), VAT rates as ``int64`` basis points,
text as ``str`` and flags as ``boolean`` columns; an empty table is not validated. Rows are
rebuilt with their ``Decimal`` amounts only to write the message of a failure, so messages read
as they always have.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandas.arrays import StringArray
from pandera.errors import SchemaErrors

from toporder_sync.core import accounts
from toporder_sync.core.errors import Finding, pos_error, warning
from toporder_sync.core.model import (
    Closure,
    LineKind,
    PreviousClosure,
    Territory,
    Ticket,
    TicketLine,
)
from toporder_sync.core.money import (
    CENT,
    ZERO,
    basis_points,
    cents,
    format_display,
    format_rate,
    from_cents,
)
from toporder_sync.schemas import (
    PaymentsTable,
    ReconciliationTable,
    TicketLinesTable,
    TicketPaymentsTable,
    TicketsTable,
    TipsTable,
    TotalsTable,
    sales_schema,
)
from toporder_sync.schemas.quick import passes

Row = pd.Series  # one row of a table as people read it (Decimal amounts), by column name

_d = format_display
_TABLE_OF_KIND = {LineKind.SALE: "sales", LineKind.REFUND: "refunds",
                  LineKind.GIFT_CARD: "gift_cards", LineKind.TIP: "tips"}
_KIND_TEXT = {kind: kind.value for kind in LineKind}


@dataclass(frozen=True, slots=True)
class ClosureTable:
    """One table of a closure: its name, schema and frame, and how to speak of its rows.

    ``frame`` is what the schema checks (money in cents, rates in basis points);
    ``label`` names a row of it as the closure does (``tickets[3].lines[1]``) and ``rows``
    rebuilds its rows with ``Decimal`` amounts for the messages, only when something failed.
    ``not_cents`` are the amounts that had no exact cents, found while converting.
    """

    name: str
    schema: pa.DataFrameSchema
    frame: pd.DataFrame
    label: Callable[[Any], str]
    rows: Callable[[], pd.DataFrame]
    not_cents: tuple[Finding, ...] = ()


class _Cents:
    """Converts a table's amounts to cents, remembering those that have no exact cents."""

    def __init__(self, label: Callable[[Any], str]) -> None:
        self.label = label
        self.problems: list[Finding] = []

    def __call__(self, value: Decimal, column: str, row: Any) -> int:
        amount = cents(value)
        if amount is None:
            self.problems.append(pos_error(
                "exact_money", f"{self.label(row)}.{column}",
                f"{column} {value!r} is not an exact amount in cents"))
            return _converted_cents(value)
        return amount


# The largest amount a table's ``int64`` cents hold.
_INT64_CENTS = from_cents(2 ** 63 - 1)


def _converted_cents(value: object) -> int:
    """An amount without exact cents, converted as it can be (reported as ``exact_money``)."""
    return int(value * 100) if isinstance(value, Decimal) and value.is_finite() else 0


def _texts(values: list[Any]) -> Any:
    return pd.array(values, dtype="str")


# The dtype ``_texts`` makes, and whether its values are Python strings (``StringArray``).
_STR = pd.array([], dtype="str").dtype
_PYTHON_STR = isinstance(_STR, pd.StringDtype) and _STR.storage == "python"


def _strings(values: np.ndarray[Any, np.dtype[np.object_]]) -> Any:
    """``_texts`` of values that are all ``str`` or NaN, in an object array: the same array,
    made without pandas converting each value again."""
    if _PYTHON_STR:
        return StringArray(values, dtype=_STR)  # type: ignore[call-arg]  # (pandas 3; stubs lag)
    return _texts(list(values))


class _BeyondInt64(ValueError):
    """Cents a table's ``int64`` column cannot hold (``validate_closure`` reports it)."""


def _ints(values: list[int]) -> np.ndarray[Any, np.dtype[np.int64]]:
    try:
        return np.array(values, dtype=np.int64)
    except OverflowError as exc:
        raise _BeyondInt64(str(exc)) from exc


def _flags(values: list[bool]) -> pd.arrays.BooleanArray:
    return pd.arrays.BooleanArray(np.array(values, dtype=bool), np.zeros(len(values), dtype=bool))


def _optional_ints(values: list[int | None]) -> pd.arrays.IntegerArray:
    """An ``Int64`` column: ``None`` is a missing value."""
    return pd.arrays.IntegerArray(_ints([v or 0 for v in values]),
                                  np.array([v is None for v in values], dtype=bool))


def _listed(table: str) -> Callable[[Any], str]:
    return lambda position: f"{table}[{position}]"


def _frame(columns: dict[str, Any]) -> pd.DataFrame:
    """A table's frame from its columns' arrays, which keep their dtypes."""
    return pd.DataFrame(columns, copy=False)


def _object_frame(columns: dict[str, list[Any]], dtypes: dict[str, Any] | None = None,
                  index: pd.Index | None = None) -> pd.DataFrame:
    """Columns not typed in ``dtypes`` hold Python objects (Decimals, datetimes)."""
    return pd.DataFrame(
        {name: pd.Series(values, dtype=(dtypes or {}).get(name, object), index=index)
         for name, values in columns.items()},
        index=index,
    )


def _rate_points(rate: Decimal) -> int:
    """A rate in basis points; a rate finer than that (never read from a closure) is -1, which
    is no rate in force, so that it is reported as such."""
    points = basis_points(rate)
    return -1 if points is None else points


def _vat_table(closure: Closure, table: str, territory: Territory,
               tickets_per_rate: Counter[Decimal]) -> ClosureTable:
    lines = closure.sales if table == "sales" else closure.refunds
    to_cents = _Cents(_listed(table))
    frame = _frame({
        "vat_rate": _ints([_rate_points(ln.vat_rate) for ln in lines]),
        **{column: _ints([to_cents(getattr(ln, column), column, i)
                          for i, ln in enumerate(lines)])
           for column in ("net", "vat", "gross")},
        "tickets": _ints([tickets_per_rate[ln.vat_rate] for ln in lines]),
    })

    def rows() -> pd.DataFrame:
        return _object_frame(
            {"vat_rate": [ln.vat_rate for ln in lines], "net": [ln.net for ln in lines],
             "vat": [ln.vat for ln in lines], "gross": [ln.gross for ln in lines],
             "tickets": [tickets_per_rate[ln.vat_rate] for ln in lines]},
            {"tickets": "int64"})

    return ClosureTable(table, _VAT_SCHEMAS[table, territory], frame, _listed(table), rows,
                  tuple(to_cents.problems))


def _payments_table(closure: Closure) -> ClosureTable:
    payments = closure.payments
    to_cents = _Cents(_listed("payments"))
    frame = _frame({
        "method": _texts([p.method for p in payments]),
        "amount": _ints([to_cents(p.amount, "amount", i) for i, p in enumerate(payments)]),
    })
    return ClosureTable("payments", _SCHEMAS[PaymentsTable], frame, _listed("payments"),
                  lambda: _object_frame({"method": [p.method for p in payments],
                                         "amount": [p.amount for p in payments]}),
                  tuple(to_cents.problems))


def _tips_table(closure: Closure, paid: dict[str, Decimal]) -> ClosureTable:
    tips = closure.tips
    to_cents = _Cents(_listed("tips"))
    covered = [t.method in paid and paid[t.method] >= t.amount for t in tips]
    frame = _frame({
        "method": _texts([t.method for t in tips]),
        "amount": _ints([to_cents(t.amount, "amount", i) for i, t in enumerate(tips)]),
        "paid_with_method": _flags(covered),
    })
    return ClosureTable("tips", _SCHEMAS[TipsTable], frame, _listed("tips"),
                  lambda: _object_frame({"method": [t.method for t in tips],
                                         "amount": [t.amount for t in tips],
                                         "paid_with_method": covered}),
                  tuple(to_cents.problems))


def _totals_table(closure: Closure, paid: dict[str, Decimal]) -> ClosureTable:
    cash = closure.cash_count
    opened, closed, day = closure.opened_at, closure.closed_at, closure.business_date
    amounts: dict[str, Decimal | None] = {
        "payments": sum(paid.values(), ZERO),
        "sales_gross": sum((s.gross for s in closure.sales), ZERO),
        "refunds_gross": sum((r.gross for r in closure.refunds), ZERO),
        "gift_cards_sold": closure.gift_cards_sold,
        "tips": sum((t.amount for t in closure.tips), ZERO),
        "period_total": closure.period_total,
        "cash_expected": cash.expected if cash else None,
        "cash_paid": paid.get(cash.method, ZERO) if cash else None,
    }
    # A business day opens on its date and closes within the next calendar day at most
    # (a bar open until 2 a.m. closes the previous day).
    dates_ok = (opened.date() == day and opened <= closed
                and closed.date() <= day + timedelta(days=1))
    to_cents = _Cents(lambda _: "closure")
    in_cents = {name: None if value is None else to_cents(value, name, 0)
                for name, value in amounts.items()}
    frame = _frame({
        **{name: _optional_ints([value]) if name.startswith("cash_") else _ints([value or 0])
           for name, value in in_cents.items()},
        "dates_ok": _flags([dates_ok]),
    })

    def rows() -> pd.DataFrame:
        return _object_frame({**{name: [value] for name, value in amounts.items()},
                              "dates_ok": [dates_ok]})

    return ClosureTable("totals", _SCHEMAS[TotalsTable], frame, lambda _: "closure", rows,
                  tuple(to_cents.problems))


def _tables(closure: Closure, territory: Territory) -> Iterator[ClosureTable]:
    """Every table of a closure, in the order problems are reported."""
    paid: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for p in closure.payments:
        paid[p.method] += p.amount
    # The tickets' tables are made first: the VAT tables count the tickets at each rate.
    ticket_tables, tickets_per_rate = (_ticket_tables(closure) if closure.tickets
                                       else ([], defaultdict(Counter)))
    for table in ("sales", "refunds"):
        yield _vat_table(closure, table, territory, tickets_per_rate[table])
    yield _payments_table(closure)
    yield _tips_table(closure, paid)
    yield from ticket_tables
    yield _totals_table(closure, paid)


def _places(counts: list[int]) -> list[tuple[int, int]]:
    """``(ticket, n)`` of each row of a flattened ``tickets[].lines[]`` or ``.payments[]``."""
    return [(t_no, n) for t_no, count in enumerate(counts) for n in range(count)]


class _LineRecords:
    """The ticket lines of a day as its distinct line records, and each line's among them.

    ``lines``: the distinct records, in the order they first appear; ``positions``: the
    position in ``lines`` of each line, ticket after ticket; ``ends``: where each ticket's lines
    end in ``positions``. What a record gives each column is worked out once, position by position
    (``kinds``, ``rates``, ``cents``, ...). Records are told apart by identity: equal amounts
    may differ in their exponent (12.3 and 12.30), and all are alive as long as the closure.
    """

    __slots__ = ("cents", "ends", "exact", "keys", "kinds", "lines", "positions", "rated", "rates",
                 "signed", "table_rates")

    def __init__(self, tickets: tuple[Ticket, ...]) -> None:
        place: dict[int, int] = {}
        self.lines: list[TicketLine] = []
        at: list[int] = []
        self.ends: list[int] = []
        for ticket in tickets:
            for line in ticket.lines:
                n = place.get(id(line))
                if n is None:
                    n = place[id(line)] = len(self.lines)
                    self.lines.append(line)
                at.append(n)
            self.ends.append(len(at))
        self.positions = np.array(at, dtype=np.intp)
        rate_text: dict[Decimal, str] = {}
        self.kinds: list[str] = []
        self.rates: list[str | float] = []  # NaN: no rate
        self.cents: list[int] = []  # converted as it can be where not exact (``exact``)
        self.exact: list[bool] = []
        self.signed: list[int] = []  # what the line adds to its ticket's total
        self.keys: list[tuple[str, str]] = []  # its key in the reconciliation
        # The (VAT table, rate) pairs of the day, and the position of each record's (-1: none).
        table_rates: dict[tuple[str, Decimal], int] = {}
        self.rated: list[int] = []
        for line in self.lines:
            kind, rate = line.kind, line.vat_rate
            shown = None
            if rate is not None:
                shown = rate_text.get(rate)
                if shown is None:
                    shown = rate_text[rate] = format_rate(rate)
            table = _TABLE_OF_KIND[kind]
            with_rate = table in ("sales", "refunds")
            amount = cents(line.gross)
            self.exact.append(amount is not None)
            amount = _converted_cents(line.gross) if amount is None else amount
            self.kinds.append(_KIND_TEXT[kind])
            self.rates.append(np.nan if shown is None else shown)
            self.cents.append(amount)
            self.signed.append(-amount if kind is LineKind.REFUND else amount)
            self.keys.append((table, (shown or "") if with_rate else ""))
            self.rated.append(table_rates.setdefault((table, rate), len(table_rates))
                              if with_rate and rate is not None else -1)
        self.table_rates = list(table_rates)

    def per_line(self, values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """A value per line, from an array of a value per record."""
        return values[self.positions]

    def inexact_rows(self) -> list[int]:
        """The rows of the lines whose gross has no exact cents."""
        if all(self.exact):
            return []
        rows: list[int] = np.flatnonzero(~self.per_line(np.array(self.exact))).tolist()
        return rows

    def from_tickets(self) -> defaultdict[tuple[str, str], int]:
        """What the lines add up to in cents, by reconciliation key."""
        from_tickets: defaultdict[tuple[str, str], int] = defaultdict(int)
        counts = np.bincount(self.positions, minlength=len(self.lines)).tolist()
        for key, count, amount in zip(self.keys, counts, self.cents, strict=True):
            from_tickets[key] += count * amount
        return from_tickets

    def per_ticket(self) -> tuple[list[int], defaultdict[str, Counter[Decimal]]]:
        """Each ticket's lines total in cents; and the tickets with sales (refunds) at each
        rate, by table, each ticket counted once per rate."""
        at = self.positions
        ends = np.array(self.ends, dtype=np.intp)
        starts = np.concatenate(([0], ends[:-1])).astype(np.intp)
        # Exact: in int64 when no running sum can leave its range, else in Python ints.
        widest = max(map(abs, self.signed), default=0) * len(at)
        signed = np.array(self.signed, dtype=np.int64 if widest < 2 ** 63 else object)
        running = np.concatenate((np.zeros(1, dtype=signed.dtype), np.cumsum(signed[at])))
        totals: list[int] = (running[ends] - running[starts]).tolist()
        per_rate: defaultdict[str, Counter[Decimal]] = defaultdict(Counter)
        rates = len(self.table_rates)
        if rates and len(at):
            rated = np.array(self.rated, dtype=np.intp)[at]
            ticket = np.repeat(np.arange(len(ends), dtype=np.intp), ends - starts)
            kept = rated >= 0
            # each (ticket, rate) once, then the tickets at each rate
            pairs = np.unique(ticket[kept] * rates + rated[kept])
            for (table, rate), count in zip(self.table_rates,
                                            np.bincount(pairs % rates, minlength=rates).tolist(),
                                            strict=True):
                if count:
                    per_rate[table][rate] += count
        return totals, per_rate


def _ticket_tables(closure: Closure,
                   ) -> tuple[list[ClosureTable], defaultdict[str, Counter[Decimal]]]:
    """Ticket lines, ticket payments, tickets and the reconciliation of identity 7; and the
    tickets with sales (refunds) at each rate, by table, each ticket counted once per rate.

    The reading shares one record among the equal lines of a day (a few dozen sales repeated):
    what a line gives each column is worked out once per record, and the columns, the
    reconciliation and the tickets per rate are made from each line's record
    (``_LineRecords``). Where a row sits in the closure (``tickets[3].lines[1]``) is worked
    out only to name a failure.
    """
    tickets = closure.tickets
    records = _LineRecords(tickets)
    line_at = cache(lambda: _places([len(t.lines) for t in tickets]))
    pay_at = cache(lambda: _places([len(t.payments) for t in tickets]))
    line_label = "tickets[{}].lines[{}]".format
    pay_label = "tickets[{}].payments[{}]".format
    line_cents = _Cents(lambda i: line_label(*line_at()[i]))
    pay_cents = _Cents(lambda i: pay_label(*pay_at()[i]))
    for row in records.inexact_rows():  # no exact cents: reported for each of its rows
        line_cents(records.lines[records.positions[row]].gross, "gross", row)
    from_tickets = records.from_tickets()
    methods: list[str] = []
    pay_amount: list[int] = []
    payments_total: list[int] = []
    for ticket in tickets:
        paid = 0
        for payment in ticket.payments:
            amount = cents(payment.amount)
            if amount is None:
                amount = pay_cents(payment.amount, "amount", len(pay_amount))
            methods.append(payment.method)
            pay_amount.append(amount)
            paid += amount
            from_tickets[("payments", payment.method)] += amount
        payments_total.append(paid)
    lines_total, tickets_per_rate = records.per_ticket()
    opened, closed = closure.opened_at, closure.closed_at
    in_day = [opened <= ticket.closed_at <= closed for ticket in tickets]
    kinds = records.per_line(np.array(records.kinds, dtype=object))
    lines = _frame({
        "kind": _strings(kinds),
        "vat_rate": _strings(records.per_line(np.array(records.rates, dtype=object))),
        # in cents, converted as it can be where not exact
        "gross": records.per_line(_ints(records.cents)),
    })

    def line_rows() -> pd.DataFrame:
        return _object_frame({
            "ticket": [tickets[t].number for t, _ in line_at()], "kind": list(kinds),
            "vat_rate": [tickets[t].lines[n].vat_rate for t, n in line_at()],
            "gross": [tickets[t].lines[n].gross for t, n in line_at()]})

    lines_table = ClosureTable("ticket_lines", _SCHEMAS[TicketLinesTable], lines,
                         lambda i: line_label(*line_at()[i]), line_rows,
                         tuple(line_cents.problems))
    payments = _frame({
        "method": _texts(methods),
        "amount": _ints(pay_amount),
    })
    payments_table = ClosureTable(
        "ticket_payments", _SCHEMAS[TicketPaymentsTable], payments,
        lambda i: pay_label(*pay_at()[i]),
        lambda: _object_frame({
            "ticket": [tickets[t].number for t, _ in pay_at()], "method": methods,
            "amount": [tickets[t].payments[n].amount for t, n in pay_at()]}),
        tuple(pay_cents.problems))
    per_ticket = _frame({
        "ticket": _texts([t.number for t in tickets]),
        "lines_total": _ints(lines_total),
        "payments_total": _ints(payments_total),
        "in_business_day": _flags(in_day),
    })
    tickets_table = ClosureTable("tickets", _SCHEMAS[TicketsTable], per_ticket, _listed("tickets"),
                           lambda: _object_frame({
                               "ticket": [t.number for t in tickets],
                               "closed_at": [t.closed_at for t in tickets],
                               "lines_total": [from_cents(c) for c in lines_total],
                               "payments_total": [from_cents(c) for c in payments_total],
                               "in_business_day": in_day}))
    return ([lines_table, payments_table, tickets_table, _reconciliation(closure, from_tickets)],
            tickets_per_rate)


def _reconciliation(closure: Closure, from_tickets: dict[tuple[str, str], int]) -> ClosureTable:
    """Identity 7: what the closure declares per key against what its tickets add up to."""
    declared: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
    for table, vat_lines in (("sales", closure.sales), ("refunds", closure.refunds)):
        for ln in vat_lines:
            declared[(table, format_rate(ln.vat_rate))] += ln.gross
    declared[("gift_cards", "")] += closure.gift_cards_sold
    declared[("tips", "")] += sum((t.amount for t in closure.tips), ZERO)
    for p in closure.payments:
        declared[("payments", p.method)] += p.amount
    keys = sorted(set(declared) | set(from_tickets))
    to_cents = _Cents(lambda _: "reconciliation")
    frame = _frame({
        "declared": _ints([to_cents(declared[key], "declared", key) for key in keys]),
        "from_tickets": _ints([from_tickets[key] for key in keys]),
    })
    return ClosureTable(
        "reconciliation", _SCHEMAS[ReconciliationTable], frame,
        lambda i: keys[i][0] if not keys[i][1] else f"{keys[i][0]}[{keys[i][1]!r}]",
        lambda: _object_frame({"table": [t for t, _ in keys], "key": [k for _, k in keys],
                               "declared": [declared[key] for key in keys],
                               "from_tickets": [from_cents(from_tickets[key]) for key in keys]}),
    )


def _rates(territory: Territory) -> frozenset[Decimal]:
    return accounts.rates_in_force(territory)


# Each model's schema, and the VAT tables' schemas of each territory (identity 3: the rates in
# force there, in basis points as the tables carry them), made once.
_SCHEMAS: dict[type[pa.DataFrameModel], pa.DataFrameSchema] = {
    model: model.to_schema()
    for model in (PaymentsTable, TipsTable, TicketLinesTable, TicketPaymentsTable, TicketsTable,
                  ReconciliationTable, TotalsTable)}
_VAT_SCHEMAS: dict[tuple[str, Territory], pa.DataFrameSchema] = {
    (table, territory): sales_schema(
        table, frozenset(_rate_points(rate) for rate in _rates(territory)))
    for table in ("sales", "refunds") for territory in Territory}


def _tolerance(row: Row) -> Decimal:
    computed: Decimal = row["net"] * row["vat_rate"] / 100
    tickets = int(row["tickets"])
    return CENT * tickets if tickets else max(CENT, abs(computed) / 100)


# Messages by check name: each takes the failing row and the column pandera named.
_MESSAGES: dict[str, Callable[[Row, str, Territory], str]] = {
    "exact_money": lambda r, c, _: f"{c} {r[c]!r} is not an exact amount in cents",
    "net_plus_vat_equals_gross": lambda r, c, _: (
        f"net {_d(r['net'])} + VAT {_d(r['vat'])} = {_d(r['net'] + r['vat'])}, "
        f"not gross {_d(r['gross'])}"),
    "vat_matches_rate": lambda r, c, _: (
        f"VAT {_d(r['vat'])} is not {format_rate(r['vat_rate'])} % of net {_d(r['net'])} "
        f"(expected {r['net'] * r['vat_rate'] / 100:.2f} ± {_tolerance(r):.2f})"),
    "vat_rate_in_force": lambda r, c, t: (
        f"taux de TVA incorrect: {format_rate(r['vat_rate'])} % is not a VAT rate in force in "
        f"{t.value} (in force: {', '.join(format_rate(x) for x in sorted(_rates(t)))} %)"),
    "field_uniqueness": lambda r, c, _: f"{c} {r[c]!s} appears on more than one line",
    "refund_positive": lambda r, c, _: f"refund {c} {r[c]} must be positive",
    "tip_method_paid": lambda r, c, _: (
        f"tips {_d(r['amount'])} through {r['method']!r} exceed what payments[] shows for it"),
    "ticket_line_rate": lambda r, c, _: (
        f"a {r['kind']} line {'needs' if r['kind'] in ('sale', 'refund') else 'has no'} "
        "vat_rate"),
    "isin": lambda r, c, _: f"{c} {r[c]!r} is not one of sale, refund, gift_card, tip",
    "ticket_balanced": lambda r, c, _: (
        f"ticket {r['ticket']}: payments {_d(r['payments_total'])} ≠ lines "
        f"{_d(r['lines_total'])}"),
    "ticket_in_business_day": lambda r, c, _: (
        f"ticket {r['ticket']} closed at {r['closed_at'].isoformat()}, outside the business day"),
    "tickets_match_totals": lambda r, c, _: (
        f"{r['table']}{' ' + r['key'] if r['key'] else ''}: the closure declares "
        f"{_d(r['declared'])} but its tickets add up to {_d(r['from_tickets'])}"),
    "debit_equals_credit": lambda r, c, _: (
        f"debit {_d(r['payments'])} ≠ credit "
        f"{_d(r['sales_gross'] - r['refunds_gross'] + r['gift_cards_sold'] + r['tips'])} "
        f"(payments {_d(r['payments'])}; sales {_d(r['sales_gross'])} − refunds "
        f"{_d(r['refunds_gross'])} + gift cards {_d(r['gift_cards_sold'])} + tips "
        f"{_d(r['tips'])})"),
    "grand_total_period": lambda r, c, _: (
        f"grand_total.period {_d(r['period_total'])} ≠ sales − refunds "
        f"{_d(r['sales_gross'] - r['refunds_gross'])}"),
    "cash_count_expected": lambda r, c, _: (
        f"cash_count.expected {_d(r['cash_expected'])} ≠ payments of the cash method "
        f"{_d(r['cash_paid'])}"),
    "gift_cards_not_negative": lambda r, c, _: "gift_cards.sold is negative",
    "business_day_dates": lambda r, c, _: (
        "opened_at must fall on the business date and closed_at after it, within the next day"),
}

# Inconsistencies the contract does not list among the identities a valid closure satisfies:
# reported for an accountant to look at, never a reason to refuse the day.
_WARNING_RULES = frozenset({"tip_method_paid"})

_RULE_FIELDS = {"debit_equals_credit": "payments", "grand_total_period": "closure.grand_total",
                "cash_count_expected": "cash_count", "gift_cards_not_negative": "gift_cards",
                "business_day_dates": "closure"}


def _in_check_order(table: ClosureTable, error: SchemaErrors) -> list[Any]:
    """pandera's failure cases, frame checks first as pandera lists them, but in a fixed order.

    pandera sorts its cases by context with an unstable sort, which shuffles the checks of one
    context whenever their number changes. Here they keep the order the checks ran in: column
    by column, each check in declared order, row by row.
    """
    columns = {name: position for position, name in enumerate(table.frame.columns)}
    rows = {label: position for position, label in enumerate(table.frame.index)}

    def key(case: Any) -> tuple[bool, int, int, int]:
        number = case.check_number
        return (case.schema_context == "Column", columns.get(case.column, -1),
                -1 if pd.isna(number) else int(number),
                rows.get(case.index, -1) if isinstance(case.index, int | str) else -1)

    return sorted(error.failure_cases.itertuples(index=False), key=key)


def _findings(table: ClosureTable, error: SchemaErrors, territory: Territory) -> Iterator[Finding]:
    """One finding per (check, row); column checks name the cell, frame checks the row."""
    seen: set[tuple[str, object]] = set()
    rows: pd.DataFrame | None = None
    for case in _in_check_order(table, error):
        check = str(case.check)
        name = check.split("(")[0]
        index = case.index
        if index is None or index not in table.frame.index:
            # A check on a whole column or frame (a dtype, a missing column): a bug of ours
            # more than of the POS, still reported so that nothing passes silently.
            yield pos_error(f"{table.name}.{name}", table.name, f"{table.name}: {check} failed "
                            f"({case.failure_case})")
            continue
        if (name, index) in seen:
            continue
        seen.add((name, index))
        column = str(case.column)
        label = table.label(index)
        if case.schema_context == "Column":
            field = f"{label}.{column}"
        elif name in ("net_plus_vat_equals_gross", "vat_matches_rate"):
            field = f"{label}.vat"
        else:
            field = _RULE_FIELDS.get(name, label)
        message = _MESSAGES.get(name)
        if message is None:
            text = f"{column}: {check}"
        else:
            rows = table.rows() if rows is None else rows
            text = message(rows.loc[index], column, territory)
        yield (warning if name in _WARNING_RULES else pos_error)(name, field, text)


def validate_closure(closure: Closure, territory: Territory,
                     previous: PreviousClosure | None = None) -> tuple[Finding, ...]:
    """Every POS error and warning of a parsed closure (empty when it is valid).

    An empty table is not validated: none of its checks has a row to fail on. A closure whose
    amounts add up beyond what a table's integer cents hold (``int64``: ±92 quadrillion euros,
    thousands of times what the format lets a declared total be, so it cannot reconcile) has
    that one error.
    """
    findings: list[Finding] = []
    try:
        tables = list(_tables(closure, territory))
    except _BeyondInt64:
        return (pos_error("amount_range", "closure",
                          f"amounts add up beyond {_d(_INT64_CENTS)}: no day's sales reach "
                          "that"),)
    for table in tables:
        findings.extend(table.not_cents)
        if table.frame.empty or passes(table.schema, table.frame):
            continue
        try:
            table.schema.validate(table.frame, lazy=True, inplace=True)
        except SchemaErrors as error:
            findings.extend(_findings(table, error, territory))
    if previous is not None:
        findings.extend(_continuity(closure, previous))
    return tuple(findings)


def closure_tables(closure: Closure, territory: Territory) -> tuple[ClosureTable, ...]:
    """The closure's tables that ``validate_closure`` validates (the empty ones are not), each
    with its schema: what pandera alone would be given (``bench/core.py``'s baseline, the
    tests of ``schemas.quick``)."""
    return tuple(table for table in _tables(closure, territory) if not table.frame.empty)


def _continuity(closure: Closure, previous: PreviousClosure) -> Iterator[Finding]:
    """Identity 6, a warning: a closure missing or the register reset; posting goes on."""
    if closure.number != previous.number + 1:
        yield warning("closure_continuity", "closure.number",
                      f"closure Z{closure.number} does not follow Z{previous.number} of "
                      f"{previous.business_date}: a closure is missing or the register was reset")
    expected = previous.perpetual_total + closure.period_total
    if closure.perpetual_total != expected:
        yield warning("perpetual_continuity", "closure.grand_total.perpetual",
                      f"perpetual total {_d(closure.perpetual_total)} ≠ previous "
                      f"{_d(previous.perpetual_total)} + period {_d(closure.period_total)} "
                      f"= {_d(expected)}")

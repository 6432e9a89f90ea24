"""Validating a closure: its tables as DataFrames checked by the pandera models, lazily.

``validate_closure`` builds the closure's tables (sales, refunds, payments, tips, tickets,
ticket lines, ticket payments, the day's totals and the ticket reconciliation), validates each
with ``lazy=True`` so that the POS learns every problem of a closure at once, and turns every
failure case into a ``Finding`` whose message is written from the offending row. Identities 1–5,
7, 8 and a rate not in force are POS errors; identity 6 (continuity) is a warning.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from toporder_sync.core import accounts
from toporder_sync.core.errors import Finding, pos_error, warning
from toporder_sync.core.model import Closure, LineKind, PreviousClosure, Territory
from toporder_sync.core.money import CENT, ZERO, format_display, format_rate
from toporder_sync.schemas import (
    EntryLinesTable,
    PaymentsTable,
    ReconciliationTable,
    TicketLinesTable,
    TicketPaymentsTable,
    TicketsTable,
    TipsTable,
    TotalsTable,
    sales_schema,
)

Row = pd.Series  # one row of a validated frame, by column name

_d = format_display


def _frame(rows: list[dict[str, Any]], index: list[str], columns: list[str],
           dtypes: dict[str, Any] | None = None) -> pd.DataFrame:
    """A table with one row per item; columns not typed in ``dtypes`` hold Python objects."""
    frame = pd.DataFrame(rows, index=pd.Index(index, dtype=object), columns=columns)
    return frame.astype({c: (dtypes or {}).get(c, object) for c in columns})


def _vat_frame(closure: Closure, table: str) -> pd.DataFrame:
    kind = LineKind.SALE if table == "sales" else LineKind.REFUND
    tickets_per_rate: Counter[Decimal] = Counter()
    for ticket in closure.tickets:
        for rate in {ln.vat_rate for ln in ticket.lines if ln.kind is kind}:
            if rate is not None:
                tickets_per_rate[rate] += 1
    lines = closure.sales if table == "sales" else closure.refunds
    frame = _frame(
        [{"vat_rate": ln.vat_rate, "net": ln.net, "vat": ln.vat, "gross": ln.gross,
          "tickets": tickets_per_rate[ln.vat_rate]} for ln in lines],
        [f"{table}[{i}]" for i in range(len(lines))],
        ["vat_rate", "net", "vat", "gross", "tickets"], {"tickets": "int64"},
    )
    return frame


def _tables(
    closure: Closure, territory: Territory
) -> Iterator[tuple[str, pa.DataFrameSchema, pd.DataFrame]]:
    """Every (name, schema, frame) of a closure, in the order problems are reported."""
    paid: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for p in closure.payments:
        paid[p.method] += p.amount
    for table in ("sales", "refunds"):
        yield table, sales_schema(table, _rates(territory)), _vat_frame(closure, table)
    yield "payments", PaymentsTable.to_schema(), _frame(
        [{"method": p.method, "amount": p.amount} for p in closure.payments],
        [f"payments[{i}]" for i in range(len(closure.payments))], ["method", "amount"],
        {"method": str})
    yield "tips", TipsTable.to_schema(), _frame(
        [{"method": t.method, "amount": t.amount,
          "paid_with_method": t.method in paid and paid[t.method] >= t.amount}
         for t in closure.tips],
        [f"tips[{i}]" for i in range(len(closure.tips))],
        ["method", "amount", "paid_with_method"], {"method": str, "paid_with_method": bool})
    if closure.tickets:
        yield from _ticket_tables(closure)
    cash = closure.cash_count
    opened, closed, day = closure.opened_at, closure.closed_at, closure.business_date
    yield "totals", TotalsTable.to_schema(), _frame(
        [{
            "payments": sum(paid.values(), ZERO),
            "sales_gross": sum((s.gross for s in closure.sales), ZERO),
            "refunds_gross": sum((r.gross for r in closure.refunds), ZERO),
            "gift_cards_sold": closure.gift_cards_sold,
            "tips": sum((t.amount for t in closure.tips), ZERO),
            "period_total": closure.period_total,
            "cash_expected": cash.expected if cash else None,
            "cash_paid": paid.get(cash.method, ZERO) if cash else None,
            "gift_cards_ok": closure.gift_cards_sold >= 0,
            # A business day opens on its date and closes within the next calendar day at most
            # (a bar open until 2 a.m. closes the previous day).
            "dates_ok": opened.date() == day and opened <= closed
            and closed.date() <= day + timedelta(days=1),
        }],
        ["closure"],
        ["payments", "sales_gross", "refunds_gross", "gift_cards_sold", "tips", "period_total",
         "cash_expected", "cash_paid", "gift_cards_ok", "dates_ok"],
        {"gift_cards_ok": bool, "dates_ok": bool},
    )


def _ticket_tables(closure: Closure) -> Iterator[tuple[str, pa.DataFrameSchema, pd.DataFrame]]:
    line_rows, line_index, pay_rows, pay_index, ticket_rows = [], [], [], [], []
    from_tickets: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
    for t_no, ticket in enumerate(closure.tickets):
        total = ZERO
        for l_no, line in enumerate(ticket.lines):
            line_rows.append({"ticket": ticket.number, "kind": line.kind.value,
                              "vat_rate": line.vat_rate, "gross": line.gross})
            line_index.append(f"tickets[{t_no}].lines[{l_no}]")
            total += -line.gross if line.kind is LineKind.REFUND else line.gross
            key = format_rate(line.vat_rate) if line.vat_rate is not None else ""
            table = {"sale": "sales", "refund": "refunds", "gift_card": "gift_cards",
                     "tip": "tips"}[line.kind.value]
            from_tickets[(table, key if table in ("sales", "refunds") else "")] += line.gross
        paid = ZERO
        for p_no, payment in enumerate(ticket.payments):
            pay_rows.append({"ticket": ticket.number, "method": payment.method,
                             "amount": payment.amount})
            pay_index.append(f"tickets[{t_no}].payments[{p_no}]")
            paid += payment.amount
            from_tickets[("payments", payment.method)] += payment.amount
        ticket_rows.append({
            "ticket": ticket.number, "closed_at": ticket.closed_at, "lines_total": total,
            "payments_total": paid,
            "in_business_day": closure.opened_at <= ticket.closed_at <= closure.closed_at,
        })
    yield "ticket_lines", TicketLinesTable.to_schema(), _frame(
        line_rows, line_index, ["ticket", "kind", "vat_rate", "gross"],
        {"ticket": str, "kind": str})
    yield "ticket_payments", TicketPaymentsTable.to_schema(), _frame(
        pay_rows, pay_index, ["ticket", "method", "amount"], {"ticket": str, "method": str})
    yield "tickets", TicketsTable.to_schema(), _frame(
        ticket_rows, [f"tickets[{i}]" for i in range(len(ticket_rows))],
        ["ticket", "closed_at", "lines_total", "payments_total", "in_business_day"],
        {"ticket": str, "in_business_day": bool})
    declared: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
    for table, vat_lines in (("sales", closure.sales), ("refunds", closure.refunds)):
        for ln in vat_lines:
            declared[(table, format_rate(ln.vat_rate))] += ln.gross
    declared[("gift_cards", "")] += closure.gift_cards_sold
    declared[("tips", "")] += sum((t.amount for t in closure.tips), ZERO)
    for p in closure.payments:
        declared[("payments", p.method)] += p.amount
    keys = sorted(set(declared) | set(from_tickets))
    yield "reconciliation", ReconciliationTable.to_schema(), _frame(
        [{"table": t, "key": k, "declared": declared[(t, k)], "from_tickets": from_tickets[(t, k)]}
         for t, k in keys],
        [t if not k else f"{t}[{k!r}]" for t, k in keys],
        ["table", "key", "declared", "from_tickets"], {"table": str, "key": str})


def _rates(territory: Territory) -> frozenset[Decimal]:
    return accounts.rates_in_force(territory)


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


def _findings(table: str, frame: pd.DataFrame, error: SchemaErrors,
              territory: Territory) -> Iterator[Finding]:
    """One finding per (check, row); column checks name the cell, frame checks the row."""
    seen: set[tuple[str, object]] = set()
    for case in error.failure_cases.itertuples(index=False):
        check = str(case.check)
        name = check.split("(")[0]
        index = case.index
        if index is None or index not in frame.index:
            # A check on a whole column or frame (a dtype, a missing column): a bug of ours
            # more than of the POS, still reported so that nothing passes silently.
            yield pos_error(f"{table}.{name}", table, f"{table}: {check} failed "
                            f"({case.failure_case})")
            continue
        if (name, index) in seen:
            continue
        seen.add((name, index))
        column = str(case.column)
        if case.schema_context == "Column":
            field = f"{index}.{column}"
        elif name in ("net_plus_vat_equals_gross", "vat_matches_rate"):
            field = f"{index}.vat"
        else:
            field = _RULE_FIELDS.get(name, str(index))
        message = _MESSAGES.get(name)
        text = message(frame.loc[index], column, territory) if message else f"{column}: {check}"
        yield (warning if name in _WARNING_RULES else pos_error)(name, field, text)


def validate_closure(closure: Closure, territory: Territory,
                     previous: PreviousClosure | None = None) -> tuple[Finding, ...]:
    """Every POS error and warning of a parsed closure (empty when it is valid)."""
    findings: list[Finding] = []
    for table, schema, frame in _tables(closure, territory):
        try:
            schema.validate(frame, lazy=True)
        except SchemaErrors as error:
            findings.extend(_findings(table, frame, error, territory))
    if previous is not None:
        findings.extend(_continuity(closure, previous))
    return tuple(findings)


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


def validate_entry_lines(frame: pd.DataFrame) -> None:
    """The invariant on built entries; a failure here is a bug, so it raises."""
    EntryLinesTable.validate(frame, lazy=True)

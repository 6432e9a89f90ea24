"""Writes the bad-input corpus of the reliability suite (``corpus/``), once; the files are kept.

Run ``.venv/bin/python tests/reliability/make_corpus.py`` to regenerate. Each file is the
worked example of the closure contract (``tests/fixtures/samples/valid-metropole.json``) with
one defect, under its own integration identifier (``tpo_corpus_<name>``, which the test gives
a client of its own). ``manifest.json`` says, for each file, what must become of it:

* ``refused``: ``receive`` refuses it, nothing stored, with ``rule`` on ``field``;
* ``flagged``: received raw, then the day flagged with ``category``, a finding with ``rule``
  on ``field``, no ledger rows;
* ``posted``: a legitimate oddity (a daylight-saving day, a payment method spelt with
  another case, accent or invisible character: posted to ``account`` by the default rules,
  flagged ``mapping_near_miss`` when the client has mapped ``near_miss_of`` explicitly).

The huge payload is not kept as a file (8 MiB in the repository for one test): the manifest
entry ``generate: huge`` has the test build it.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from copy import deepcopy
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
BASE = HERE.parent.parent / "tests" / "fixtures" / "samples" / "valid-metropole.json"
CORPUS = HERE / "corpus"

Doc = dict[str, Any]


def _dumps(document: Doc) -> bytes:
    return json.dumps(document, ensure_ascii=False, indent=1).encode("utf-8")


def _edit(change: Callable[[Doc], None]) -> Callable[[Doc], bytes]:
    def build(document: Doc) -> bytes:
        change(document)
        return _dumps(document)
    return build


def _text(change: Callable[[str], str]) -> Callable[[Doc], bytes]:
    def build(document: Doc) -> bytes:
        return change(_dumps(document).decode("utf-8")).encode("utf-8")
    return build


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    def change(document: Doc) -> None:
        *parents, last = path.split(".")
        node: Any = document
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value
    return change


def _delete(path: str) -> Callable[[Doc], None]:
    def change(document: Doc) -> None:
        *parents, last = path.split(".")
        node: Any = document
        for part in parents:
            node = node[part]
        del node[last]
    return change


def _rename_method(old: str, new: str) -> Callable[[Doc], None]:
    def change(document: Doc) -> None:
        for table in ("payments", "tips"):
            for item in document.get(table, []):
                if item["method"] == old:
                    item["method"] = new
        if document.get("cash_count", {}).get("method") == old:
            document["cash_count"]["method"] = new
    return change


def _dst(document: Doc) -> None:
    # 2026-10-25: clocks go back at 03:00 in Paris; the day opens at +02:00, closes at +01:00.
    document["closure"]["business_date"] = "2026-10-25"
    document["closure"]["opened_at"] = "2026-10-25T10:02:11+02:00"
    document["closure"]["closed_at"] = "2026-10-26T01:12:40+01:00"


def _unknown_rate(document: Doc) -> None:
    document["sales"][1] = {"vat_rate": "19.6", "net": "300.00", "vat": "58.80",
                            "gross": "358.80"}
    document["payments"][0]["amount"] = "923.80"
    document["closure"]["grand_total"]["period"] = "1458.80"


def _method(old: str, new: str, account: str) -> tuple[Callable[[Doc], bytes], dict[str, str]]:
    """A method renamed in the register: the default rules still find its account, but an
    explicit mapping of the old name is a near miss (a ledger-side error, never a guess)."""
    return _edit(_rename_method(old, new)), {"expect": "posted", "method": new,
                                             "account": account, "near_miss_of": old}


def _pos(rule: str, field: str) -> dict[str, str]:
    """Flagged for the POS to fix, under ``rule``, naming ``field``."""
    return {"expect": "flagged", "category": "pos", "rule": rule, "field": field}


def _refused(rule: str, field: str) -> dict[str, str]:
    """Refused before anything is stored, under ``rule``, naming ``field``."""
    return {"expect": "refused", "rule": rule, "field": field}


# name -> (how to make it from the base document, expectation)
CASES: dict[str, tuple[Callable[[Doc], bytes], dict[str, str]]] = {
    "truncated": (lambda d: _dumps(d)[:300], _refused("json", "$")),
    "malformed-trailing-comma": (_text(lambda t: t.replace('"EUR"', '"EUR",', 1)),
                                 _refused("json", "$")),
    "bom": (lambda d: b"\xef\xbb\xbf" + _dumps(d), _refused("encoding", "$")),
    "utf16": (lambda d: _dumps(d).decode("utf-8").encode("utf-16"), _refused("encoding", "$")),
    "latin1": (lambda d: _dumps(d).decode("utf-8").encode("latin-1"), _refused("encoding", "$")),
    "nan": (_text(lambda t: t.replace('"amount": "925.00"', '"amount": NaN', 1)),
            _refused("json", "$")),
    "infinity": (_text(lambda t: t.replace('"counted": "398.00"', '"counted": Infinity', 1)),
                 _refused("json", "$")),
    "duplicate-key": (_text(lambda t: t.replace('"number": 412', '"number": 412, "number": 413',
                                                1)), _refused("json", "$")),
    "not-an-object": (lambda d: b"[1, 2, 3]", _refused("json", "$")),
    "bad-business-date": (_edit(_set("closure.business_date", "2026-02-30")),
                          _refused("routing", "closure.business_date")),
    "number-amount": (_text(lambda t: t.replace('"amount": "925.00"', '"amount": 925.00', 1)),
                      _pos("schema.type", "payments[0].amount")),
    "integer-amount": (_text(lambda t: t.replace('"sold": "50.00"', '"sold": 50', 1)),
                       _pos("schema.type", "gift_cards.sold")),
    "missing-currency": (_edit(_delete("closure.currency")), _pos("schema.required", "closure")),
    "missing-payments": (_edit(_delete("payments")), _pos("schema.required", "$")),
    "extra-field": (_edit(_set("discounts", "0.00")), _pos("schema.additionalProperties", "$")),
    "wrong-schema-tag": (_edit(_set("schema", "toporder.closure/v2")),
                         _pos("schema.const", "schema")),
    "negative-amount": (_edit(_set("payments.0.amount", "-925.00")),
                        _pos("debit_equals_credit", "payments")),
    "three-decimals": (_edit(_set("payments.0.amount", "925.001")),
                       _pos("schema.pattern", "payments[0].amount")),
    "unknown-vat-rate": (_edit(_unknown_rate), _pos("vat_rate_in_force", "sales[1].vat_rate")),
    "totals-mismatch": (_edit(_set("closure.grand_total.period", "1500.00")),
                        _pos("grand_total_period", "closure.grand_total")),
    "payments-short": (_edit(_set("payments.0.amount", "900.00")),
                       _pos("debit_equals_credit", "payments")),
    "closed-two-days-later": (_edit(_set("closure.closed_at", "2026-11-29T23:00:00+01:00")),
                              _pos("business_day_dates", "closure")),
    "opened-day-before": (_edit(_set("closure.opened_at", "2026-11-26T10:00:00+01:00")),
                          _pos("business_day_dates", "closure")),
    "naive-datetime": (_edit(_set("closure.opened_at", "2026-11-27T10:02:11")),
                       _pos("schema.format", "closure.opened_at")),
    "daylight-saving-day": (_edit(_dst), {"expect": "posted"}),
    "method-case": _method("Carte Bancaire", "carte bancaire", "511500"),
    "method-no-accent": _method("Espèces", "Especes", "530000"),
    "method-decomposed-accent": _method("Espèces", unicodedata.normalize("NFD", "Espèces"),
                                        "530000"),
    "method-nbsp": _method("Carte Bancaire", "Carte\u00a0Bancaire", "511500"),
    "method-zero-width": _method("Carte Bancaire", "Carte\u200bBancaire", "511500"),
    "huge": (lambda d: b"", {"expect": "refused", "rule": "size", "field": "$",
                             "generate": "huge"}),
    # Bounds at the door (docs/reliability.md): what the ledger could not store or compute with.
    "number-beyond-64-bits": (_text(lambda t: t.replace('"number": 412',
                                                        f'"number": {2**63}', 1)),
                              _refused("bounds.integer", "closure.number")),
    "number-5000-digits": (_text(lambda t: t.replace('"number": 412',
                                                     f'"number": {"9" * 5000}', 1)),
                           _refused("bounds.digits", "closure.number")),
    "nul-in-identifier": (_text(lambda t: t.replace('"TOP-1042"', '"TOP-\\u00001042"', 1)),
                          _refused("bounds.text", "establishment.id")),
    "nul-in-method": (_text(lambda t: t.replace('"Swile"', '"Swile\\u0000"', 1)),
                      _refused("bounds.text", "payments[1].method")),
    "surrogate-in-name": (_text(lambda t: t.replace('"Le Petit Zinc"',
                                                    '"Le Petit \\ud800Zinc"', 1)),
                          _refused("bounds.text", "establishment.name")),
    "business-date-9999": (_edit(_set("closure.business_date", "9999-12-31")),
                           _refused("bounds.date", "closure.business_date")),
}


def main() -> None:
    base = json.loads(BASE.read_text(encoding="utf-8"))
    CORPUS.mkdir(exist_ok=True)
    manifest = {}
    for name, (build, expectation) in CASES.items():
        document = deepcopy(base)
        document["integration_id"] = f"tpo_corpus_{name}"
        raw = build(document)
        if expectation.get("generate") is None:
            (CORPUS / f"{name}.json").write_bytes(raw)
        manifest[name] = {"file": f"{name}.json", **expectation}
    (CORPUS / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()

"""Class 3, bad inputs: the corpus of ``corpus/`` (``make_corpus.py``) and seeded mutations.

Each corpus file must end as its manifest says: refused at ``receive`` with nothing stored,
or received raw and its day flagged with the right category and a finding naming the rule
and the field, with no ledger rows; or, for a legitimate oddity, posted. The fuzzer then feeds
mutations of a valid closure (bytes flipped, cut, inserted; JSON values swapped for others of
any type) with a fixed seed: whatever happens, nothing escapes as an unexpected exception and
the invariants hold after each one.
"""

from __future__ import annotations

import json
import os
import random
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from reliability import invariants, support, tally
from toporder_sync.core.closure import MAX_CLOSURE_BYTES
from toporder_sync.core.errors import Category, ClosureRejected, RefusedError
from toporder_sync.day import client_record
from toporder_sync.ledger import clients, days
from toporder_sync.ledger.db import session_scope
from toporder_sync.ledger.tables import ClientDayRow, ClientRow, ClosureRow, EntryRow

CORPUS = Path(__file__).parent / "corpus"
MANIFEST: dict[str, dict[str, str]] = json.loads((CORPUS / "manifest.json").read_text())
BASE = Path(__file__).parent.parent / "fixtures" / "samples" / "valid-metropole.json"
FUZZ = int(os.environ.get("RELIABILITY_FUZZ", "80"))
FUZZ_SEED = 20261128
ACTIVATED = date(2026, 10, 1)


def _client(engine: Engine, client_id: str, integration_id: str) -> support.ClientRecord:
    support.activate(engine, client_id, on=ACTIVATED)
    with session_scope(engine) as session:
        row = session.get(ClientRow, client_id)
        assert row is not None
        row.integration_id = integration_id
    return client_record(engine, client_id)


def _rows(engine: Engine, client_id: str) -> tuple[int, int, int]:
    with session_scope(engine) as session:
        return tuple(  # type: ignore[return-value]
            session.scalar(select(func.count()).select_from(table)
                           .where(table.client_id == client_id)) or 0
            for table in (ClosureRow, EntryRow, ClientDayRow))


def _raw(name: str, case: dict[str, str]) -> bytes:
    if case.get("generate") == "huge":
        document = json.loads(BASE.read_text(encoding="utf-8"))
        document["integration_id"] = f"tpo_corpus_{name}"
        document["padding"] = "x" * MAX_CLOSURE_BYTES
        return json.dumps(document).encode()
    return (CORPUS / case["file"]).read_bytes()


def _check(engine: Engine, where: str, only: list[tuple[str, date]]) -> None:
    found = tally.record(invariants.check(engine, only=only), where)
    assert not found, f"{where}:\n{found.describe()}"


def test_each_corpus_input_ends_as_its_manifest_says(engine: Engine) -> None:
    for number, name in enumerate(sorted(MANIFEST)):
        _corpus_case(engine, f"corpus-{number}", name)


def _corpus_case(engine: Engine, client_id: str, name: str) -> None:
    case = MANIFEST[name]
    tally.tried("bad_input", f"corpus: {case['expect']}")
    client = _client(engine, client_id, f"tpo_corpus_{name}")
    raw = _raw(name, case)
    if case["expect"] == "refused":
        with pytest.raises((ClosureRejected, RefusedError)) as refused:
            support.receive(engine, raw)
        assert isinstance(refused.value, ClosureRejected)
        assert [(f.rule, f.field) for f in refused.value.findings] == \
            [(case["rule"], case["field"])], (name, refused.value.findings)
        assert all(f.message for f in refused.value.findings)
        assert _rows(engine, client.client_id) == (0, 0, 0), "a refused closure stores nothing"
        return
    received = support.receive(engine, raw)
    result = support.run(engine, client, received.business_date, run_id=f"corpus-{name}")
    where = f"corpus {name}"
    if case["expect"] == "flagged":
        assert result.outcome.kind == "flagged", (name, result)
        assert result.category == Category(case["category"])
        assert (case["rule"], case["field"]) in {(f.rule, f.field) for f in result.findings}, \
            result.findings
        assert _rows(engine, client.client_id)[1] == 0, "a flagged day posts nothing"
    else:
        assert result.outcome.kind == "posted", (name, result)
        assert result.entry is not None and result.entry.is_balanced
        if "method" in case:
            with session_scope(engine) as session:
                seen = {m.name: m.account for m in days.list_methods(session, client_id)}
                assert seen[case["method"]] == case["account"], seen
                clients.set_mapping(session, client_id, case["near_miss_of"],
                                    case["account"], now=support.NOW)
            again = support.run(engine, client, received.business_date, run_id="near-miss")
            assert again.outcome.kind == "flagged" and again.category is Category.LEDGER, again
            assert ("mapping_near_miss", f"payments[{case['method']!r}]") in {
                (f.rule, f.field) for f in again.findings}, again.findings
    _check(engine, where, [(client.client_id, received.business_date)])


_ODD_VALUES: tuple[Any, ...] = (None, 0, -1, True, "", "abc", "1e3", "0.001", "-0.00",
                                "99999999999999.99", [], {}, Decimal("1.5"), "2026-13-01",
                                "Carte\u200bBancaire", "\u00a0", "é" * 300)


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [p for key, value in node.items() for p in _leaves(value, (*path, key))]
    if isinstance(node, list):
        return [p for n, value in enumerate(node) for p in _leaves(value, (*path, n))]
    return [path]


def _mutate(rng: random.Random, base: bytes) -> tuple[str, bytes]:
    kind = rng.choice(("flip", "cut", "insert", "truncate", "value", "drop"))
    data = bytearray(base)
    if kind == "flip":
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == "cut":
        start = rng.randrange(len(data))
        del data[start:start + rng.randint(1, 40)]
    elif kind == "insert":
        data[rng.randrange(len(data)):0] = bytes(rng.randrange(256)
                                                 for _ in range(rng.randint(1, 8)))
    elif kind == "truncate":
        del data[rng.randrange(len(data)):]
    else:
        document = json.loads(base, parse_float=Decimal)
        path = rng.choice([p for p in _leaves(document) if p[0] != "integration_id"])
        node = document
        for part in path[:-1]:
            node = node[part]
        if kind == "drop":
            del node[path[-1]]
        else:
            node[path[-1]] = rng.choice(_ODD_VALUES)
        text = json.dumps(document, ensure_ascii=False,
                          default=lambda value: float(value))  # a Decimal: a JSON number
        data = bytearray(text.encode())
    return kind, bytes(data)


def test_fuzzed_closures_are_refused_or_flagged_never_half_posted(engine: Engine) -> None:
    client = _client(engine, "fuzz", "tpo_corpus_fuzz")
    base_document = json.loads(BASE.read_text(encoding="utf-8"))
    base_document["integration_id"] = client.integration_id
    base = json.dumps(base_document, ensure_ascii=False).encode()
    rng = random.Random(FUZZ_SEED)  # noqa: S311 - a reproducible fuzz, not a secret
    delivered: list[tuple[str, bytes]] = []
    for n in range(FUZZ):
        kind, raw = _mutate(rng, base)
        tally.tried("bad_input", f"fuzz: {kind}")
        before = _rows(engine, client.client_id)[0]
        try:
            received = support.receive(engine, raw, now=support.NOW.replace(second=n % 60))
        except (ClosureRejected, RefusedError) as refused:
            assert str(refused)
            after = _rows(engine, client.client_id)[0]
            assert after == before, f"fuzz #{n} ({kind}): refused but stored"
            continue
        delivered.append((client.client_id, raw))
        result = support.run(engine, client, received.business_date, run_id=f"fuzz-{n}")
        assert result.outcome.kind in ("posted", "flagged", "nothing to post", "refused"), result
        if result.outcome.kind == "flagged":
            assert result.findings and all(f.rule and f.field for f in result.findings)
        found = tally.record(invariants.check(
            engine, delivered=delivered,
            only=[(client.client_id, received.business_date)]), f"fuzz #{n} ({kind})")
        assert not found, f"fuzz #{n} ({kind}): {raw[:200]!r}\n{found.describe()}"

"""Where the contract's sample closures are, for the tests (repo copy beside shared/)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from toporder_sync.core import closure

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO.parent / "shared" / "spec" / "samples"
FIXTURES = REPO / "tests" / "fixtures" / "samples"


def sample_dir() -> Path:
    """The contract's samples; the copy in tests/fixtures must stay identical (checked)."""
    return SAMPLES if SAMPLES.is_dir() else FIXTURES


def sample_bytes(name: str) -> bytes:
    return (sample_dir() / name).read_bytes()


def sample_document(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(sample_bytes(name))
    return loaded


def encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


def read_in_one_go(document: dict[str, Any]) -> bool:
    """Whether ``closure._read`` (decoding and the compiled checks in one go) passes the
    document as sent; a ``Decimal`` in it is sent as a JSON number."""
    raw = json.dumps(document, ensure_ascii=False, default=float).encode("utf-8")
    return closure._read(raw, "document.json", closure.LineCache()) is not None


def unknown_method_day(integration_id: str, day_number: int) -> bytes:
    """The sample with an unknown method ("Lydia", 30.00), as the closure of 2026-11-(day_number)
    of its establishment: numbered and totalled to follow the closure of the day before."""
    document = sample_document("valid-unknown-method.json")
    document["integration_id"] = integration_id
    offset = day_number - 27
    closure_ = document["closure"]
    closure_["number"] = 412 + offset
    closure_["business_date"] = f"2026-11-{day_number:02d}"
    closure_["opened_at"] = f"2026-11-{day_number:02d}T10:02:11+01:00"
    closure_["closed_at"] = f"2026-11-{day_number + 1:02d}T01:12:40+01:00"
    closure_["grand_total"]["perpetual"] = str(Decimal("123456.78") + offset * Decimal("1460.00"))
    return encode(document)

"""Where the contract's sample closures are, for the tests (repo copy beside shared/)."""

from __future__ import annotations

import json
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

# Two commands do all the set-up on a fresh machine (Python ≥ 3.11 and make):
#   make demo    the main job on the embedded defaults (SQLite ledger, Prefect local mode)
#   make check   every check: ruff, mypy, pytest (CI runs exactly this)
# Both first create .venv and install the locked dependencies (uv.lock) into it.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: demo check lint typecheck test install

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml uv.lock
	test -x $(BIN)/uv || { $(PYTHON) -m venv $(VENV) && $(BIN)/pip install --quiet uv==$(UV_VERSION); }
	$(BIN)/uv sync --frozen --quiet
	touch $@

demo: install
	$(BIN)/toporder-sync demo

lint: install
	$(BIN)/ruff check .

typecheck: install
	.ci/typecheck

test: install
	$(BIN)/pytest

check: lint typecheck test

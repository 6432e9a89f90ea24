# Two commands do all the set-up on a fresh machine (Python ≥ 3.11 and make):
#   make demo    the main job on the embedded defaults (SQLite ledger, Prefect local mode)
#   make check   every check: ruff, mypy, pytest, bandit and pip-audit, then the reliability
#                report of the attacks pytest ran (CI runs exactly this)
# make reliability: the attacks of tests/reliability alone, bandit and pip-audit, then a table
# of what was tried and the counted invariant violations (its last line: "reliability: …").
# Both first create .venv and install the locked dependencies (uv.lock) into it.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: demo check lint typecheck test install reliability bench bench-quick screenshots

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

RELIABILITY_TALLY := build/reliability-tally.json

test: install
	rm -f $(RELIABILITY_TALLY)
	RELIABILITY_TALLY=$(RELIABILITY_TALLY) $(BIN)/pytest
	$(BIN)/python tests/reliability/audit.py
	$(BIN)/python tests/reliability/report.py $(RELIABILITY_TALLY)

check: lint typecheck test

reliability: install
	rm -f $(RELIABILITY_TALLY)
	RELIABILITY_TALLY=$(RELIABILITY_TALLY) $(BIN)/pytest tests/reliability -q -p no:cacheprovider; \
	tests=$$?; \
	$(BIN)/python tests/reliability/audit.py; audit=$$?; \
	$(BIN)/python tests/reliability/report.py $(RELIABILITY_TALLY) --pytest-status $$tests \
		--audit-status $$audit

# Measurements, not tests: each figure a ratio against a baseline run in the same session
# (BENCHMARKS.md, which also says how long each takes).
bench: install
	$(BIN)/python -m bench.run

bench-quick: install
	$(BIN)/python -m bench.run --quick

# Not part of check: pictures of the Prefect UI after the demo (docs/screenshots/README.md).
# Starts its own throwaway prefect server with the UI, runs the demo against it and photographs
# four pages with Debian's headless Chromium, which it needs: apt-get install chromium.
screenshots: install
	$(BIN)/python docs/screenshots/take.py --out docs/screenshots

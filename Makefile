# Two commands on a fresh machine: `make demo` and `make test`. Both set up .venv first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml 2>/dev/null | sha256sum | cut -c1-16)

.PHONY: setup demo test test-fast lint lock bench airflow clean help

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: $(STAMP)  ## create .venv from requirements.lock (fast when nothing changed)

$(STAMP): requirements.lock pyproject.toml
	@PYTHON=$$(scripts/check_prereqs.sh) && \
	  if [ ! -x $(PY) ]; then echo "creating $(VENV) with $$PYTHON"; $$PYTHON -m venv $(VENV); fi
	@$(PY) -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	@$(VENV)/bin/uv pip sync --quiet --python $(PY) requirements.lock
	@$(VENV)/bin/uv pip install --quiet --python $(PY) --no-deps -e .
	@scripts/install_compose.sh || echo "note: 'docker compose' unavailable; the compose check will be skipped"
	@rm -f $(VENV)/.installed-* && touch $(STAMP)
	@echo "environment ready: $(VENV)"

demo: setup  ## simulate a shop and run the nightly DAG through Airflow (< 10 min)
	$(VENV)/bin/marketing demo

test: setup  ## run the whole test suite (unit, integration, end-to-end); installs chromium for the browser test
	@scripts/install_browser.sh
	@PY=$(PY) scripts/run_tests.sh

test-fast: setup  ## unit tests only
	$(PY) -m pytest -q tests/unit

lint: setup  ## ruff check and ruff format --check (the whole project)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: setup  ## benchmarks (not tests, ~90 min): pipeline at 1M events, a tiny night's overhead, ALS and its peer, tiers S/M/L beside DuckDB, day 30 vs day 180, a 700k-line first night, cross-sell rules on a real year, a real shop's year through every stage
	$(PY) benchmarks/bench_pipeline.py --out benchmarks/results/pipeline-1m.json
	$(PY) benchmarks/bench_overhead.py --out benchmarks/results/overhead-tiny.json
	$(PY) benchmarks/bench_recommender.py --out benchmarks/results/recommender-1m.json
	$(PY) benchmarks/bench_peers.py --out benchmarks/results/peers-als-1m.json
	$(PY) benchmarks/bench_tiers.py --out benchmarks/results/tiers.json
	$(PY) benchmarks/bench_history.py --out benchmarks/results/history-20k.json
	$(PY) benchmarks/bench_first_night.py --out benchmarks/results/first-night-700k.json
	$(PY) benchmarks/bench_associations.py --out benchmarks/results/associations-online-retail.json
	$(PY) benchmarks/bench_real_shop.py --out benchmarks/results/real-shop-online-retail.json

lock:  ## re-resolve requirements.lock from requirements.in
	$(VENV)/bin/uv pip compile requirements.in --python-version 3.11 -o requirements.lock

airflow: setup  ## run Airflow standalone (UI on :8080) with this project's DAGs
	$(VENV)/bin/marketing airflow standalone

clean:  ## remove generated data (keeps .venv)
	rm -rf data airflow_home

# On a fresh machine: `make demo` (set up, run the default sweep, write its report), `make test` (set up, run the
# tests but the slow ones) and `make test-all` (the whole suite: what CI runs). Setup installs the pinned CPU
# torch first, then the project.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0

.PHONY: setup setup-browser setup-postgres demo lint test test-all bench clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

# Debian's chromium for the report's headless-browser test (skipped when it cannot be installed); the demo
# does not need it.
$(BIN)/.browser: $(BIN)/.installed
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
		|| echo "chromium not installed: the browser test will be skipped"
	touch $@

# Debian's PostgreSQL for the tracking-server test on PostgreSQL (skipped when it cannot be installed).
$(BIN)/.postgres: $(BIN)/.installed
	command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
		|| (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) \
		|| echo "postgresql not installed: the PostgreSQL tracking-server test will be skipped"
	touch $@

setup: $(BIN)/.installed

setup-browser: $(BIN)/.browser

setup-postgres: $(BIN)/.postgres

demo: setup
	$(BIN)/python -m orchestrator sweep=cpu_small

# `make lint`: ruff over the code, tests and benchmarks (pyproject.toml's [tool.ruff]).
lint: setup
	$(BIN)/ruff check orchestrator trainers tests benchmarks

# `make test`: ruff (make lint), then everything but the tests marked slow (multi-sweep end-to-end, cluster,
# server, wheel, browser, benchmark smoke modes); `make test-all`: ruff, then the whole suite, what CI runs (.ci/run).
test: setup setup-browser lint
	$(BIN)/python -m pytest -q -m "not slow" tests

test-all: setup setup-browser setup-postgres lint
	$(BIN)/python -m pytest -q tests

bench: setup
	$(BIN)/python benchmarks/fit_speed.py
	$(BIN)/python benchmarks/fit_memory.py
	$(BIN)/python benchmarks/trainer_throughput.py
	$(BIN)/python benchmarks/scheduling_overhead.py
	$(BIN)/python benchmarks/report_speed.py
	$(BIN)/python benchmarks/lr_search.py
	$(BIN)/python benchmarks/pilot_hparams_law.py
	$(BIN)/python benchmarks/adaptive_isoflop.py
	$(BIN)/python benchmarks/plan_scale.py
	$(BIN)/python benchmarks/cpu_rules.py
	$(BIN)/python benchmarks/forks.py
	$(BIN)/python benchmarks/scale.py
	$(BIN)/python benchmarks/eta.py
	$(BIN)/python benchmarks/published_laws.py
	$(BIN)/python benchmarks/forecast_misfitting.py
	$(BIN)/python benchmarks/forecast_demo.py
	$(BIN)/python benchmarks/prepare_memory.py
	$(BIN)/python benchmarks/pilot_corpus.py

clean:
	rm -rf reports outputs mlruns mlflow.db mlflow.db-* checkpoints optuna.journal

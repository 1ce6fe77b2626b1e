# The two commands of README.md: `make demo` and `make test`. Both create .venv on first use.
# The demo installs what rosesync needs to run; the test tools come with `make test` (issue 17).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.installed-runtime
INSTALLED := $(VENV)/.installed

.PHONY: demo test lint soak bench clean

$(RUNTIME): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(INSTALLED): $(RUNTIME)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# `make demo WAREHOUSE=duckdb` syncs into DuckDB instead of SQLite (issue 14).
demo: $(RUNTIME)
	$(BIN)/rosesync demo$(if $(WAREHOUSE), --warehouse $(WAREHOUSE))

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/mypy

# pytest-xdist runs the suite in TEST_WORKERS processes: its tests mostly wait (on subprocesses,
# Celery workers, loopback HTTP, the databases), so more processes than CI's 2 cores pay
# (DEVELOPERS.md, "What make test runs").
TEST_WORKERS ?= 4

# The whole suite, with a short slice of the soak/fault runs (make soak runs them all).
test: lint
	$(BIN)/pytest -q -n $(TEST_WORKERS)

soak: $(INSTALLED)
	$(BIN)/pytest -q -n $(TEST_WORKERS) -m soak --soak

bench: $(INSTALLED)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache *.egg-info

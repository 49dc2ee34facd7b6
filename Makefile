# Two commands on a fresh machine with Python 3.11 and pip: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export ADP_DATA_DIR ?= $(CURDIR)/data

.PHONY: demo test ui prod bench bench-feast install clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/adp demo

# Two pytest-xdist workers (2 cores in CI); the modules sharing a built world stay on one worker
# and the longest start first (ai_data_platform_tests/conftest.py). PYTEST_WORKERS=0 runs serially.
PYTEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadgroup --no-loadscope-reorder

ui: $(STAMP)
	$(BIN)/adp ui

# Production profile: webserver + daemon as separate processes, Dagster storage in PostgreSQL
# (DAGSTER_PG_URL, default postgresql://postgres@127.0.0.1:5432/adp_dagster). Ctrl-C stops both.
prod: $(STAMP)
	$(BIN)/adp prod

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

# Feast runs in its own virtual environment: it is never a dependency of the project.
FEAST_VENV := .venv-feast
$(FEAST_VENV)/.installed:
	@test -x $(FEAST_VENV)/bin/python || $(PYTHON) -m venv $(FEAST_VENV)
	$(FEAST_VENV)/bin/python -m pip install --quiet "feast[duckdb]==0.67.0"
	@touch $@

bench-feast: $(STAMP) $(FEAST_VENV)/.installed
	$(BIN)/python bench/bench_pit.py --setup-only
	$(FEAST_VENV)/bin/python bench/bench_feast.py --workdir $(ADP_DATA_DIR)/bench/pit90

clean:
	rm -rf $(ADP_DATA_DIR)/landing $(ADP_DATA_DIR)/warehouse.duckdb* $(ADP_DATA_DIR)/dagster_home $(ADP_DATA_DIR)/alerts.jsonl

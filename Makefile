# Two commands: `make run` (set up, then run the pipeline on all 70,000 images) and `make test`.
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
UV = $(shell command -v uv 2>/dev/null || echo $(BIN)/uv)

.PHONY: setup run test test-fast data airflow bench lock clean-venv

setup:
	@bash scripts/setup.sh

run: setup
	$(BIN)/mnist-tfx data
	$(BIN)/mnist-tfx run

# Lint and format check first (ruff, configured in pyproject.toml), then every test.
test:
	@bash scripts/setup.sh test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

data: setup
	$(BIN)/mnist-tfx data

# Airflow: AIRFLOW_HOME under the home directory, SQLite DB migrated, the DAG visible (docs/orchestration.md).
airflow: setup
	@bash scripts/airflow.sh

# Benchmarks (not tests): `make bench`, or `make bench QUICK=1` for a few-minute version.
bench:
	@bash scripts/setup.sh bench
	$(BIN)/python -m bench.run_all $(if $(QUICK),--quick)

# Re-resolve requirements.lock from pyproject.toml (needs a uv; set-up installs one in .venv).
lock: setup
	$(UV) pip compile pyproject.toml --all-extras --generate-hashes \
	  --python $(BIN)/python -o requirements.lock

clean-venv:
	rm -rf $(VENV)

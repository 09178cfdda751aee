# The two commands of the README:
#   make demo   set up .venv (pinned) and run the demo campaign end to end -> HTML report
#   make test   set up .venv (pinned) and run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all
# test processes (pytest-xdist; one test file per process at a time: module fixtures, the
# cluster tests' daemons and the resumed campaigns stay in one process)
TEST_WORKERS ?= 2

.PHONY: setup demo test smoke full lint schema clean-results

setup: $(VENV)/.etem-installed

$(VENV)/.etem-installed: pyproject.toml envs/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c envs/constraints.txt -e ".[dev]"
	touch $@

# `etem run` = snakemake + recovery: the same command resumes after kill -9 (stale lock removed,
# incomplete jobs redone)
demo: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/etem run --cores $(CORES) --configfile config/demo.yaml
	@echo "Report: $$(pwd)/results/demo/report/report.html"

smoke: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/etem run --cores $(CORES) --configfile config/smoke.yaml

full: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/etem run --cores $(CORES) --configfile config/config.yaml

test: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src
	$(BIN)/lint-imports
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --lint --configfile config/smoke.yaml

schema: setup
	$(BIN)/etem config schema --out workflow/schemas/config.schema.json
	$(BIN)/etem config defaults --out config/defaults.yaml

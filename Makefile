# seqbench - `make help` lists the targets.
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
PROFILE ?= cpu
RUNS    ?= runs/bench-$(PROFILE)
RESULTS ?= results
FRESH   ?= 0

.DEFAULT_GOAL := help
.PHONY: help bench test test-slow lint format report clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo "  variables: PROFILE=smoke|cpu|gpu  RUNS=<run dir>  RESULTS=<report dir>  FRESH=1 (start over)"

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# compat: the checkout itself on sys.path, so Hydra's plugin scan finds hydra_plugins/
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]' --config-settings editable_mode=compat
	touch $@

bench: $(VENV)/.installed ## run the studies of PROFILE (default cpu), then write the report to RESULTS
	$(PY) -m seqbench.bench --profile $(PROFILE) --runs $(RUNS) --results $(RESULTS) $(if $(filter 1,$(FRESH)),--fresh,)

report: $(VENV)/.installed ## re-aggregate the runs in RUNS into RESULTS (FORCE=1: replace another runs folder's report)
	$(PY) -m seqbench.report --runs $(RUNS) --results $(RESULTS) $(if $(filter 1,$(FORCE)),--force,)

test: $(VENV)/.installed ## run the fast test suite (fails when a test fails or none ran)
	$(PY) -m pytest -q

test-slow: $(VENV)/.installed ## run the slow end-to-end tests (smoke bench, launcher sweep)
	$(PY) -m pytest -q -m slow

lint: $(VENV)/.installed ## ruff check and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed ## apply ruff's formatter and fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean: ## remove the venv, caches and local runs (results/ is kept)
	rm -rf $(VENV) runs outputs multirun .pytest_cache .ruff_cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

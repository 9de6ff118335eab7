# Two entry points: `make run` (the main job on embedded defaults) and `make test` (the whole suite).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/lwmecps: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

.PHONY: run test lint bench
run: $(BIN)/lwmecps
	$(BIN)/lwmecps serve

test: $(BIN)/lwmecps
	WANDB_MODE=disabled RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 $(BIN)/python -m pytest -q

lint: $(BIN)/lwmecps
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

bench: $(BIN)/lwmecps
	$(BIN)/python bench/env_throughput.py

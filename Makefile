# riskstream developer entry points. Every target bootstraps what it needs from a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help install demo test unit integration lint kafka kafka-stop postgres postgres-stop bench clean

help:
	@echo "make demo | make test | make lint | make kafka | make postgres | make bench"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,models]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/riskstream demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pip install -q -e '.[dev,spark]'
	$(BIN)/python tools/kafka.py fetch
	sh tools/ensure-chromium.sh
	$(BIN)/python -m pytest tests

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

integration: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,spark]'
	$(BIN)/python tools/kafka.py fetch
	$(BIN)/python -m pytest tests/integration

kafka: $(STAMP)
	$(BIN)/python tools/kafka.py start --data-dir .kafka

kafka-stop: $(STAMP)
	$(BIN)/python tools/kafka.py stop --data-dir .kafka

# A throw-away local PostgreSQL cluster (Debian's server binaries; installed with apt if missing).
# Prints the DSN: export RISKSTREAM_PG_DSN=<it> for examples/card-velocity-postgres.yaml.
postgres:
	@$(PYTHON) tools/postgres.py start --data-dir .postgres

postgres-stop:
	$(PYTHON) tools/postgres.py stop --data-dir .postgres

bench: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,models,bench]'
	$(BIN)/python bench/run.py --write BENCHMARKS.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

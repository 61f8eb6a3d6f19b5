# Two entry points: `make run` (the pipeline on local services) and `make test` (the whole suite).
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

export DATABASE_URL ?= postgresql://localhost/walletpipe
export TEST_DATABASE_URL ?= postgresql://localhost/walletpipe_test
export BROKER_URL ?= redis://localhost:6379/0
export PORT ?= 8000

.PHONY: run test install services migrate lint typecheck imports pytest bench-ledger clean

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev]'
	touch $@

install: $(BIN)/.installed

services:
	@bash scripts/services.sh

migrate: install services
	$(BIN)/walletctl db upgrade

run: migrate
	@echo "walletpipe: web on http://127.0.0.1:$(PORT) (GET /healthz); Ctrl-C stops everything"
	$(BIN)/honcho start -f Procfile $$(grep -oE '^[a-z]+' Procfile | grep -v '^release$$')

test: install services lint typecheck imports pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy ledger workers webhook_receiver walletctl

imports: install
	$(BIN)/lint-imports

pytest: install services
	$(BIN)/pytest --cov --cov-report=term

bench-ledger: migrate
	$(BIN)/python bench/ledger_apply.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage

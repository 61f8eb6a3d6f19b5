# Two entry points: `make run` (the pipeline on local services) and `make test` (the whole suite).
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

export DATABASE_URL ?= postgresql://localhost/walletpipe
export TEST_DATABASE_URL ?= postgresql://localhost/walletpipe_test
export BROKER_URL ?= redis://localhost:6379/0
export PORT ?= 8000
export LOG_FORMAT ?= text
# Local development secrets, so `walletctl webhook send` works against `make run` out of the
# box. The code has no default secrets; production sets its own.
export STRIPE_WEBHOOK_SECRET ?= whsec_local_development
export PAYSTACK_WEBHOOK_SECRET ?= sk_test_local_development
export RAZORPAY_WEBHOOK_SECRET ?= rzp_local_development
export YOCO_WEBHOOK_SECRET ?= whsec_bG9jYWwtZGV2ZWxvcG1lbnQtc2VjcmV0
export ADYEN_HMAC_KEY ?= 44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056
export PAYFAST_PASSPHRASE ?= payfast-local-development
export PAYFAST_ALLOWED_NETWORKS ?= 127.0.0.1/32
export WALLETPIPE_JWT_SECRET ?= local-development-jwt-secret-0123456789abcdef

.PHONY: run test install services migrate lint typecheck imports pytest bench-ledger bench-receiver bench-e2e clean deploy-check test-scale bench-slow-clients

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

# Metrics: every gunicorn process counts into one directory, emptied at each start; the
# worker's Dramatiq exporter listens on 9191.
RUN_METRICS := $(CURDIR)/.run/metrics

run: migrate
	@echo "walletpipe: web on http://127.0.0.1:$(PORT) (GET /healthz); Ctrl-C stops everything"
	rm -rf $(RUN_METRICS) && mkdir -p $(RUN_METRICS)/web $(RUN_METRICS)/worker
	PATH="$(CURDIR)/$(BIN):$$PATH" PROMETHEUS_MULTIPROC_DIR=$(RUN_METRICS)/web \
	  dramatiq_prom_port=9191 dramatiq_prom_host=127.0.0.1 dramatiq_prom_db=$(RUN_METRICS)/worker \
	  $(BIN)/honcho start -f Procfile $$(grep -oE '^[a-z]+' Procfile | grep -v '^release$$')

test: install services deploy-check lint typecheck imports pytest

# The container and monitoring files: hadolint, promtool (installed with apt-get when missing).
deploy-check: install
	BIN=$(BIN) bash scripts/check-deploy.sh

# The end-to-end suite again on RabbitMQ (a vhost of its own on the local server), then many
# hosts in network namespaces (root): web, two worker hosts, the scheduler; one is cut off.
test-scale: install services deploy-check
	TEST_E2E_BROKERS=rabbitmq $(BIN)/pytest tests/e2e
	$(BIN)/pytest -m scale tests/scale

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy ledger workers webhook_receiver walletctl

imports: install
	$(BIN)/lint-imports

pytest: install services
	$(BIN)/pytest --cov --cov-report=term

bench-ledger: install services
	$(BIN)/python bench/ledger_apply.py

bench-receiver: install services
	@command -v wrk >/dev/null || { echo "bench-receiver needs wrk: apt-get install -y wrk"; exit 1; }
	$(BIN)/python bench/receiver.py

bench-e2e: install services
	@command -v wrk >/dev/null || { echo "bench-e2e needs wrk: apt-get install -y wrk"; exit 1; }
	$(BIN)/python bench/e2e.py

bench-slow-clients: install services deploy-check
	$(BIN)/python bench/slow_clients.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage

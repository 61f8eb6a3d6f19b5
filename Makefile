# Two entry points: `make run` (the pipeline on local services) and `make test` (the whole suite).
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

# DATABASE_URL, TEST_DATABASE_URL, BROKER_URL and TEST_BROKER_URL: the environment's, else this
# tree's own names (ledger/local_names.py). scripts/services.py finds, starts or brings the
# servers and hands the commands below the URLs that reach them.
SERVICES := $(BIN)/python scripts/services.py
export HOST ?= 127.0.0.1
export PORT ?= 8000
WORKER_METRICS_PORT ?= 9191
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

.PHONY: run test test-bundled install services services-stop migrate lint typecheck imports pytest \
	chaos openapi deploy-check test-scale bench-ledger bench-receiver bench-e2e bench-batch \
	bench-slow-clients clean

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

# Up and kept (bundled servers included) until `make services-stop`; prints `export` lines,
# so `eval "$$(make -s services)"` points a shell at them.
services: install
	@$(SERVICES) up

services-stop: install
	@$(SERVICES) down

migrate: install
	@$(SERVICES) run -- walletctl db upgrade

# Metrics: every gunicorn process counts into one directory, emptied at each start; the
# worker's Dramatiq exporter listens on WORKER_METRICS_PORT.
RUN_METRICS := $(CURDIR)/.run/metrics

run: install
	@rm -rf $(RUN_METRICS) && mkdir -p $(RUN_METRICS)/web $(RUN_METRICS)/worker
	@PROMETHEUS_MULTIPROC_DIR=$(RUN_METRICS)/web dramatiq_prom_port=$(WORKER_METRICS_PORT) \
	  dramatiq_prom_host=127.0.0.1 dramatiq_prom_db=$(RUN_METRICS)/worker \
	  $(SERVICES) run -- sh -c 'walletctl db upgrade && \
	    echo "walletpipe: web on http://$$HOST:$$PORT (GET /healthz), worker metrics on" \
	      "http://127.0.0.1:$$dramatiq_prom_port; Ctrl-C stops everything" && \
	    exec python scripts/procfile.py web worker scheduler'

test: install deploy-check lint typecheck imports pytest

# The container and monitoring files: hadolint, promtool (installed with apt-get when missing).
deploy-check: install
	BIN=$(BIN) bash scripts/check-deploy.sh

# The end-to-end suite again on RabbitMQ (a vhost of its own on the local server), then many
# hosts in network namespaces (root): web, two worker hosts, the scheduler; one is cut off.
test-scale: install
	@TEST_E2E_BROKERS=rabbitmq $(SERVICES) run -- pytest tests/e2e
	@$(SERVICES) run -- pytest -m scale tests/scale

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy ledger workers webhook_receiver walletctl

imports: install
	$(BIN)/lint-imports

pytest: install
	@$(SERVICES) run -- pytest --cov --cov-report=term

# The migrations and the whole suite on the bundled PostgreSQL and Redis, whatever the machine has.
test-bundled: install
	@WALLETPIPE_SERVICES=bundled $(SERVICES) run -- sh -c 'walletctl db upgrade && pytest'

# Exactly-once through a worker SIGKILL, a broker restart and a PostgreSQL restart, on servers
# of its own (PostgreSQL 15 binaries and redis-server needed); CHAOS_EVENTS sets the size.
# `make test` runs the same at a small size.
chaos: install
	$(BIN)/python -m tests.chaos

# docs/openapi.json: what GET /openapi.json serves with every gateway configured; a test keeps
# the two equal, so run this after changing the API.
openapi: install
	$(BIN)/python scripts/openapi.py

bench-ledger: install
	@$(SERVICES) run -- python bench/ledger_apply.py

bench-receiver: install
	@command -v wrk >/dev/null || { echo "bench-receiver needs wrk: apt-get install -y wrk"; exit 1; }
	@$(SERVICES) run -- python bench/receiver.py

bench-e2e: install
	@command -v wrk >/dev/null || { echo "bench-e2e needs wrk: apt-get install -y wrk"; exit 1; }
	@$(SERVICES) run -- python bench/e2e.py

bench-slow-clients: install deploy-check
	@$(SERVICES) run -- python bench/slow_clients.py

# Delivery and usage billing, per row before and in batches after, in one run.
bench-batch: install
	@$(SERVICES) run -- python bench/batch_paths.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage

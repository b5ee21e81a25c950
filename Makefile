# Everything runs from the repository root. See README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help
# uv is installed into a project-local tool venv when the machine has none (a fresh machine).
UV := $(shell command -v uv 2>/dev/null || echo .cache/tools/bin/uv)

help: ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

deps: ## install Python dependencies from the lock file (installs uv if missing)
	@command -v uv >/dev/null || [ -x "$(UV)" ] || { echo "installing uv into .cache/tools"; \
	  python3 -m venv .cache/tools && .cache/tools/bin/pip install --quiet uv==0.13.9; }
	@$(UV) sync --frozen --quiet

up: deps ## start Kafka, PostgreSQL and every service in the background; returns when all are ready (REPLICAS=3, or REPLICAS=orchestrator=3,inventory=2: processes per service)
	@deploy/local/infra.sh dev start
	@deploy/local/services.sh up
	@echo "Kafka: 127.0.0.1:9092   PostgreSQL: 127.0.0.1:55432   Zipkin: http://127.0.0.1:9411   logs: .local/dev/logs/"

down: ## stop everything `make up` started (data stays)
	@deploy/local/services.sh down
	@deploy/local/infra.sh dev stop

clean: down ## stop everything and remove its data
	@deploy/local/infra.sh dev clean

status: ## what is running
	@deploy/local/infra.sh dev status
	@deploy/local/services.sh status

topics: ## Kafka topics with their partitions, and each consumer group's lag per topic
	@deploy/local/topics.sh

tail: deps ## follow a topic's messages, pretty-printed: make tail TOPIC=oms.orders.status [FROM=beginning] [MAX=n]
	@test -n "$(TOPIC)" || { echo "usage: make tail TOPIC=oms.orders.events[,other.topic] [FROM=beginning]" >&2; exit 2; }
	@[ -n "$$KAFKA_BOOTSTRAP" ] || eval "$$(deploy/local/infra.sh dev env)"; \
	  export KAFKA_BOOTSTRAP; .venv/bin/python deploy/local/tail.py "$(TOPIC)" $(if $(filter beginning,$(FROM)),--from-beginning) $(if $(MAX),--max-messages $(MAX))

demo: deps ## one order's whole journey on the stack `make up` started (stock, order, dispatch, scans, return, refund)
	@[ -n "$$KAFKA_BOOTSTRAP" ] || eval "$$(deploy/local/infra.sh dev env)"; \
	  .venv/bin/python deploy/local/demo.py --kafka "$$KAFKA_BOOTSTRAP"

dlq: deps ## dead letters: make dlq ARGS="list|show|replay TOPIC [ID...|--all] [--consumer GROUP]"
	@[ -n "$$KAFKA_BOOTSTRAP" ] || eval "$$(deploy/local/infra.sh dev env)"; \
	  export KAFKA_BOOTSTRAP; .venv/bin/python -m oms_platform.dlq $(ARGS)

test: deps ## the whole test suite against real Kafka and PostgreSQL
	@$(UV) run --frozen pytest

test-unit: deps ## the fast loop: unit tests and the repository's rules (no Kafka, no PostgreSQL)
	@$(UV) run --frozen pytest -q tests/unit $(wildcard tests/deploy) tests/test_*.py

api-docs: deps ## regenerate docs/api/<service>.openapi.json and .asyncapi.json from the code (a test fails while they are stale)
	@$(UV) run --frozen python -m tools.api_docs

fuzz: deps ## schemathesis against every service's OpenAPI, exhaustive (make test runs a short one): no 5xx
	@OMS_FUZZ_EXAMPLES=$${OMS_FUZZ_EXAMPLES:-200} OMS_FUZZ_PHASES=$${OMS_FUZZ_PHASES:-examples,coverage,fuzzing} \
	  OMS_FUZZ_SEED=$${OMS_FUZZ_SEED-} $(UV) run --frozen pytest -q tests/e2e/test_fuzz.py

lint: deps ## ruff
	@$(UV) run --frozen ruff check libs services tests bench tools

typecheck: deps ## mypy on libs and services (settings in pyproject.toml)
	@MYPYPATH=$$(ls -d libs/*/src services/*/src | paste -sd: -) $(UV) run --frozen mypy

imports: deps ## import-linter: services independent, layers inside each service, a pure domain (tools/import_contracts.py)
	@$(UV) run --frozen python -m tools.import_contracts

check: lint typecheck imports ## every static check: ruff, mypy, import contracts (.ci/run runs it before make test)

bench: deps ## benchmarks: capture vs a bare FastAPI+asyncpg endpoint, then orders/s from POST to confirmed
	@echo "make bench runs its own service processes (on topics bench.*): stopping the ones make up started, so their CPU is not measured (make up restarts them)"
	@deploy/local/services.sh down
	@OMS_ZIPKIN=0 deploy/local/infra.sh dev start
	@$(UV) run --frozen python -m bench

chaos: deps ## fault injection against `make up` (same REPLICAS, OMS_ADMIN_TOKEN): load, SIGKILLs, Kafka and PostgreSQL restarts, then checks; ARGS="--seconds 300 --kills 40"
	@$(UV) run --frozen python -m tools.chaos $(ARGS)

.PHONY: help deps up down clean status topics tail demo dlq test test-unit api-docs fuzz lint typecheck imports check bench chaos

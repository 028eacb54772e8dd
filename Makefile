# Developer and CI entry points. `make test` is the README's test command and
# what CI (.ci/run) runs. Set CARGO_TARGET_DIR to share a build directory.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
# Where rustup puts cargo: found even when `make dev-deps` just installed it
# (appended, so a cargo already on PATH keeps precedence).
export PATH := $(PATH):$(or $(CARGO_HOME),$(HOME)/.cargo)/bin

# Arguments for `make run`, e.g. make run ARGS="solve --input problem.json"
ARGS ?=

.PHONY: help dev-deps kafka clickhouse soak fuzz migrate run test test-integration test-load \
        schemathesis bench bench-pipeline bench-solver lint fmt-check clippy fmt

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | \
	    awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

dev-deps: ## Check (and install if missing) the toolchain the build and tests need
	@scripts/dev-deps.sh

kafka: ## Install (once) and start the Kafka-API broker the tests use (tansu, 127.0.0.1:9092)
	scripts/kafka-broker.sh

clickhouse: ## Install (once) and start the ClickHouse server the tests use (127.0.0.1:8123)
	scripts/clickhouse-server.sh

migrate: ## Apply database migrations (DATABASE_URL, default the embedded SQLite file under DATA_DIR)
	$(CARGO) run --release -- migrate

run: ## Run the service, embedded by default (SQLite under DATA_DIR); override with ARGS="..."
	$(CARGO) run --release -- $(or $(ARGS),serve)

test: dev-deps ## All tests: unit, integration, doctests, and benches run once in test mode
	scripts/kafka-broker.sh >/dev/null
	scripts/clickhouse-server.sh >/dev/null
	$(CARGO) test --workspace --all-targets
	$(CARGO) test --workspace --doc
	CARGO=$(CARGO) scripts/test-arroyo-udfs.sh
	scripts/schemathesis.sh
	scripts/validate-deploy.sh
	SCREENSHOT=$(or $(CARGO_TARGET_DIR),target)/dashboard.png scripts/dashboard-e2e.sh

test-integration: dev-deps ## Integration tests only
	scripts/kafka-broker.sh >/dev/null
	scripts/clickhouse-server.sh >/dev/null
	$(CARGO) test --workspace --tests

soak: dev-deps ## Soak test: the release service on the real broker for DURATION s (600) at RATE msg/s; RSS and fds must stay flat
	scripts/soak.sh

fuzz: ## Fuzz the telemetry decoders and the problem-file parser, FUZZ_SECONDS s (60) per target (nightly, cargo-fuzz)
	scripts/fuzz.sh

schemathesis: dev-deps ## API robustness: schemathesis against the service's own OpenAPI document (SQLite, then PostgreSQL)
	scripts/schemathesis.sh

.PHONY: dashboard-e2e
dashboard-e2e: ## The web dashboard in headless Chromium (Playwright): map, moves, charts, live; screenshot to docs/dashboard.png
	scripts/dashboard-e2e.sh

.PHONY: validate-deploy
validate-deploy: ## Deployment files (docker-compose.yml, k8s/, Dockerfile) checked without Docker or a cluster
	scripts/validate-deploy.sh

test-load: dev-deps ## Load test of the API (release build, PostgreSQL + Redis, hey and wrk): prints a table
	scripts/load-test.sh

bench: dev-deps ## Engine vs LEMON: the side-by-side table, then the criterion suite
	$(CARGO) bench --bench solver_table
	$(CARGO) bench --bench solver

bench-pipeline: dev-deps ## Pipeline: embedded events/s, through the broker vs a bare consumer, window->persisted latency
	scripts/kafka-broker.sh >/dev/null
	$(CARGO) bench --bench pipeline

bench-solver: dev-deps ## Engine vs LEMON side-by-side table only
	$(CARGO) bench --bench solver_table

lint: fmt-check clippy ## Formatting check and clippy with warnings as errors (make -k lint runs both)

fmt-check: dev-deps ## Formatting check only
	$(CARGO) fmt --all -- --check

clippy: dev-deps ## Clippy on every target, warnings as errors
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the workspace
	$(CARGO) fmt --all

# Run `make help` for the targets. `make services` starts PostgreSQL (5432), MariaDB (3306),
# Apache Kafka (9092) and RabbitMQ (5672) on 127.0.0.1, installing what is missing (see README).
GO ?= go
TEST_TIMEOUT ?= 20m
# Extra go test flags for make test, e.g. TESTFLAGS=-v to see each test's time.
TESTFLAGS ?=
# The tests' Kafka: the broker `make services` starts, unless set to another one.
KAFKA_BROKERS = $(or $(OUTBOX_KAFKA_BROKERS),127.0.0.1:9092)
# Every package of every module in go.work (the root module and the nested ones).
PKGS = $(shell scripts/modules.sh list | sed 's,$$,/...,')

.DEFAULT_GOAL := help
.PHONY: help services services-down kafka-cluster python-env demo test test-python test-short test-offline bench bench-quick lint fmt tidy

help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

demo: ## Run the demo: orders in database transactions -> relay -> Kafka -> a Watermill consumer (SQLite; DB=postgres|mysql).
	@echo "building the demo (first run downloads and compiles dependencies, about a minute)..."
	@$(GO) build -o .cache/bin/quickstart ./examples/quickstart
	@.cache/bin/quickstart $(if $(DB),-db $(DB))

services: ## Start PostgreSQL, MariaDB, Kafka and RabbitMQ on 127.0.0.1 (idempotent; installs what is missing).
	@scripts/services.sh up

services-down: ## Stop the services `make services` started.
	@scripts/services.sh down

kafka-cluster: ## Start a 3-broker Kafka cluster on 127.0.0.1:19092-19094.
	@scripts/services.sh cluster

python-env: ## Build the Python compatibility suite's virtualenv in .cache/python (once per machine).
	@scripts/python-env.sh

test: services python-env ## Run every test (vet, then go test -race) against PostgreSQL, MariaDB, Apache Kafka and RabbitMQ, then test-offline.
	$(GO) vet $(PKGS)
	@OUTBOX_KAFKA_BROKERS=$(KAFKA_BROKERS) $(GO) run ./internal/testenv/kafkaversion
	OUTBOX_KAFKA_BROKERS=$(KAFKA_BROKERS) $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(TESTFLAGS) $(PKGS)
	$(GO) run ./internal/testenv/skipcheck $(PKGS)

test-python: services python-env ## Run the Python compatibility suite alone (compat/).
	OUTBOX_KAFKA_BROKERS=$(KAFKA_BROKERS) $(GO) test -count=1 -v ./compat

test-short: ## Run the fast tests only (skips the multi-process fault tests).
	$(GO) test -short -count=1 $(PKGS)

test-offline: ## Check that without the services the tests that need them skip, and fail with CI set.
	$(GO) run ./internal/testenv/skipcheck $(PKGS)

bench: ## Run the benchmark program with defaults (a few minutes) and print its table.
	$(GO) run ./cmd/outbox-bench

bench-quick: ## Run the benchmark program with small N (under a minute).
	$(GO) run ./cmd/outbox-bench -quick

lint: ## Check formatting and run go vet.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

fmt: ## Format the code.
	gofmt -w $$(git ls-files '*.go')

tidy: ## Run go mod tidy in every module, keeping their replace directives in step.
	@scripts/modules.sh tidy

# Run `make help` for the targets. Services: PostgreSQL on 127.0.0.1:5432 and
# MariaDB/MySQL on 127.0.0.1:3306 (see README); Kafka is embedded (devkafka).
GO ?= go
TEST_TIMEOUT ?= 20m

.DEFAULT_GOAL := help
.PHONY: help demo test test-short bench bench-quick lint fmt

help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

demo: ## Run the quickstart: PostgreSQL transactions -> relay -> Kafka -> Watermill consumer.
	$(GO) run ./examples/quickstart

test: ## Run every test (vet, then go test -race) against PostgreSQL, MariaDB and the embedded Kafka broker.
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

test-short: ## Run the fast tests only (skips the multi-process fault tests).
	$(GO) test -short -count=1 ./...

bench: ## Run the benchmark program with defaults (a few minutes) and print its table.
	$(GO) run ./cmd/outbox-bench

bench-quick: ## Run the benchmark program with small N (under a minute).
	$(GO) run ./cmd/outbox-bench -quick

lint: ## Check formatting and run go vet.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

fmt: ## Format the code.
	gofmt -w $$(git ls-files '*.go')

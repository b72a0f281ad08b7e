package main

import (
	"os"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outboxkit/outbox/broker/kafka"
)

// transactionalEnv carries -transactional to the relay child processes.
const transactionalEnv = "OUTBOX_BENCH_TRANSACTIONAL"

// transactional reports whether the run publishes in transactional mode.
func transactional() bool { return os.Getenv(transactionalEnv) != "" }

// publisherConfig is the Kafka configuration of every relay of the run. With
// -transactional each relay publishes in transactions (a transactional ID of
// its own, the progress topic outbox-bench-progress).
func publisherConfig(addr string) kafka.Config {
	cfg := kafka.Config{Brokers: []string{addr}}
	if transactional() {
		cfg.Transactional = true
		cfg.ProgressTopic = "outbox-bench-progress"
	}
	return cfg
}

// isolation is the consumers' isolation level: read_committed with
// -transactional, so that they see what committed transactions published.
func isolation() kgo.Opt {
	if transactional() {
		return kgo.FetchIsolationLevel(kgo.ReadCommitted())
	}
	return kgo.FetchIsolationLevel(kgo.ReadUncommitted())
}

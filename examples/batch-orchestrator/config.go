package main

import (
	"cmp"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	outboxwatermill "github.com/outboxkit/outbox/contrib/watermill"
	"github.com/outboxkit/outbox/migrations"
	"github.com/outboxkit/outbox/relay"
)

// Config is the service's configuration. The outbox settings keep the
// Python service's names and defaults (its config.py).
type Config struct {
	// PostgresURL is OUTBOX_POSTGRES_URL. Defaults to PostgreSQL on
	// 127.0.0.1, database test.
	PostgresURL string
	// KafkaBrokers is OUTBOX_KAFKA_BROKERS, comma-separated. Empty starts an
	// embedded development broker.
	KafkaBrokers []string
	// MetricsAddr is OUTBOX_METRICS_ADDR, where /metrics is served.
	// Defaults to a free port on 127.0.0.1.
	MetricsAddr string

	// PollInterval is OUTBOX_POLL_INTERVAL_SECONDS. Defaults to 5.0; commits
	// in this process wake the relay at once, so it only matters for events
	// written by other processes.
	PollInterval time.Duration
	// BatchSize is OUTBOX_BATCH_SIZE. Defaults to 100.
	BatchSize int
	// MaxRetries is OUTBOX_MAX_RETRIES. Defaults to 5.
	MaxRetries int
	// ErrorRetryInterval is OUTBOX_ERROR_RETRY_INTERVAL_SECONDS. Defaults
	// to 30.0.
	ErrorRetryInterval time.Duration

	// OutboxTable and InboxTable default to event_outbox and event_inbox;
	// TablePrefix (default "boc_") prefixes the service's own tables. Tests
	// set them to run side by side.
	OutboxTable, InboxTable, TablePrefix string
	// TopicPrefix prefixes the Kafka topics and consumer groups. Defaults
	// to none: the topics are the event types, as the Python services name
	// them. Tests set it to run side by side on one broker.
	TopicPrefix string
	// Batches is how many batches the demo drives; the third fails in CJ
	// assessment. Defaults to 4.
	Batches int
	// Timeout bounds the demo. Defaults to 1 minute.
	Timeout time.Duration
}

// configFromEnv reads the configuration from the environment.
func configFromEnv() (Config, error) {
	var c Config
	var err error
	c.PostgresURL = os.Getenv("OUTBOX_POSTGRES_URL")
	if b := os.Getenv("OUTBOX_KAFKA_BROKERS"); b != "" {
		c.KafkaBrokers = strings.Split(b, ",")
	}
	c.MetricsAddr = os.Getenv("OUTBOX_METRICS_ADDR")
	if c.PollInterval, err = seconds("OUTBOX_POLL_INTERVAL_SECONDS"); err != nil {
		return c, err
	}
	if c.BatchSize, err = integer("OUTBOX_BATCH_SIZE"); err != nil {
		return c, err
	}
	if c.MaxRetries, err = integer("OUTBOX_MAX_RETRIES"); err != nil {
		return c, err
	}
	if c.ErrorRetryInterval, err = seconds("OUTBOX_ERROR_RETRY_INTERVAL_SECONDS"); err != nil {
		return c, err
	}
	return c, nil
}

func seconds(name string) (time.Duration, error) {
	v := os.Getenv(name)
	if v == "" {
		return 0, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive number of seconds", name, v)
	}
	return time.Duration(f * float64(time.Second)), nil
}

func integer(name string) (int, error) {
	v := os.Getenv(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive integer", name, v)
	}
	return n, nil
}

// withDefaults fills the zero fields.
func (c Config) withDefaults() Config {
	c.PostgresURL = cmp.Or(c.PostgresURL, "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	c.MetricsAddr = cmp.Or(c.MetricsAddr, "127.0.0.1:0")
	c.PollInterval = cmp.Or(c.PollInterval, 5*time.Second)
	c.BatchSize = cmp.Or(c.BatchSize, 100)
	c.MaxRetries = cmp.Or(c.MaxRetries, 5)
	c.ErrorRetryInterval = cmp.Or(c.ErrorRetryInterval, 30*time.Second)
	c.OutboxTable = cmp.Or(c.OutboxTable, migrations.DefaultTable)
	c.InboxTable = cmp.Or(c.InboxTable, outboxwatermill.DefaultInboxTable)
	c.TablePrefix = cmp.Or(c.TablePrefix, "boc_")
	c.Batches = cmp.Or(c.Batches, 4)
	c.Timeout = cmp.Or(c.Timeout, time.Minute)
	return c
}

// relayConfig is the relay's share of the configuration, as the Python services'
// OutboxSettings provider maps it.
func (c Config) relayConfig() relay.Config {
	return relay.Config{
		PollInterval:       c.PollInterval,
		BatchSize:          c.BatchSize,
		MaxRetries:         c.MaxRetries,
		ErrorRetryInterval: c.ErrorRetryInterval,
		MaxBackoff:         max(5*time.Minute, c.ErrorRetryInterval),
	}
}

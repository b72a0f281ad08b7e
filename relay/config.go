package relay

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/outboxkit/outbox"
)

// Config configures a [Relay]. The zero value of each field means its
// default; the Python relay's settings keep their names (PollInterval, BatchSize,
// MaxRetries, ErrorRetryInterval) with defaults chosen for low latency.
type Config struct {
	// Owner names this relay in its claims. Defaults to "hostname:pid".
	Owner string
	// BatchSize is the most events claimed and published at once.
	// Defaults to 500.
	BatchSize int
	// PollInterval is how long the relay sleeps when it found nothing to do
	// and was not woken. Wake-ups from writers in the same process (and
	// LISTEN/NOTIFY where enabled) cut it short. Defaults to 100ms.
	PollInterval time.Duration
	// Lease is how long a claim holds its events. Publishing is bounded by
	// three quarters of it. Defaults to 30s.
	Lease time.Duration
	// MaxRetries is the number of failed attempts after which an event is
	// parked. Defaults to 10.
	MaxRetries int
	// ErrorRetryInterval is the backoff after the first failed attempt; it
	// doubles with each further attempt, with ±20% jitter, up to MaxBackoff.
	// It is also the first delay of the circuit breaker when the broker is
	// unreachable, and after store errors; those pauses double up to 10s
	// (or MaxBackoff if smaller), so publishing resumes soon after an outage.
	// Defaults to 1s.
	ErrorRetryInterval time.Duration
	// MaxBackoff caps the backoff. Defaults to 5m.
	MaxBackoff time.Duration
	// Retention is how long published (and skipped) events stay in the
	// table before the janitor deletes them. [KeepForever] disables the
	// janitor; [DeleteOnPublish] deletes each event once the broker accepted
	// it. Defaults to 7 days.
	Retention time.Duration
	// CleanupInterval is the janitor's period. Defaults to 1m.
	CleanupInterval time.Duration
	// CleanupBatch is the most rows the janitor deletes per statement.
	// Defaults to 1000.
	CleanupBatch int
	// ShutdownTimeout bounds how long Run keeps publishing the batch in
	// flight after its context is done. Run returns at most
	// ShutdownTimeout + 2×SettleTimeout after its context is done: a claim
	// in flight may take SettleTimeout, publishing ShutdownTimeout, and
	// recording the outcome SettleTimeout. Defaults to 10s.
	ShutdownTimeout time.Duration
	// SettleTimeout bounds recording a batch's outcome in the store, and a
	// claim. Both run under a context that shutdown does not cancel: a
	// message the broker accepted must be marked, and a claim that committed
	// must be finished. Defaults to 5s.
	SettleTimeout time.Duration
	// Logger receives the relay's logs. Defaults to discarding them.
	Logger *slog.Logger
	// Tracer traces publishing; if it also implements
	// outbox.SettleTracer it receives each batch's outcome (see package
	// otel). Defaults to none.
	Tracer outbox.PublishTracer
}

// Values of Config.Retention with a meaning of their own.
const (
	// KeepForever disables the janitor: published events stay in the table
	// until an operator deletes them (outbox purge).
	KeepForever time.Duration = -1
	// DeleteOnPublish deletes each event as soon as the broker accepted it,
	// instead of marking it published (publish-and-delete): one cheap
	// statement per batch and no janitor, at the price of every record of
	// published events (see README). The store must implement
	// store.Deleter.
	DeleteOnPublish time.Duration = -2
)

func (c Config) withDefaults() Config {
	c.Owner = cmp.Or(c.Owner, defaultOwner())
	c.BatchSize = cmp.Or(c.BatchSize, 500)
	c.PollInterval = cmp.Or(c.PollInterval, 100*time.Millisecond)
	c.Lease = cmp.Or(c.Lease, 30*time.Second)
	c.MaxRetries = cmp.Or(c.MaxRetries, 10)
	c.ErrorRetryInterval = cmp.Or(c.ErrorRetryInterval, time.Second)
	c.MaxBackoff = cmp.Or(c.MaxBackoff, 5*time.Minute)
	c.Retention = cmp.Or(c.Retention, 7*24*time.Hour)
	c.CleanupInterval = cmp.Or(c.CleanupInterval, time.Minute)
	c.CleanupBatch = cmp.Or(c.CleanupBatch, 1000)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, 10*time.Second)
	c.SettleTimeout = cmp.Or(c.SettleTimeout, 5*time.Second)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	check := func(ok bool, field, want string) {
		if !ok {
			errs = append(errs, fmt.Errorf("relay: Config.%s %s", field, want))
		}
	}
	check(c.BatchSize > 0 && c.BatchSize <= 10000, "BatchSize", "must be in 1..10000")
	check(c.PollInterval > 0, "PollInterval", "must be positive")
	check(c.Lease >= time.Second, "Lease", "must be at least 1s")
	check(c.MaxRetries > 0, "MaxRetries", "must be positive")
	check(c.ErrorRetryInterval > 0, "ErrorRetryInterval", "must be positive")
	check(c.MaxBackoff >= c.ErrorRetryInterval, "MaxBackoff", "must be at least ErrorRetryInterval")
	check(c.Retention == KeepForever || c.Retention == DeleteOnPublish || c.Retention > 0, "Retention", "must be positive, KeepForever or DeleteOnPublish")
	check(c.CleanupInterval > 0, "CleanupInterval", "must be positive")
	check(c.CleanupBatch > 0, "CleanupBatch", "must be positive")
	check(c.ShutdownTimeout > 0, "ShutdownTimeout", "must be positive")
	check(c.SettleTimeout > 0, "SettleTimeout", "must be positive")
	return errors.Join(errs...)
}

func defaultOwner() string {
	host, err := os.Hostname()
	if err != nil {
		host = "relay"
	}
	return host + ":" + strconv.Itoa(os.Getpid())
}

package outbox

import (
	"context"
	"time"
)

// WriteTracer traces writes into the outbox. Stores call TraceWriteStart after
// the events were prepared and validated and before the statement runs, and
// TraceWriteEnd after it ran. TraceWriteStart may edit the events' headers
// (they are the store's own copies), e.g. to inject a trace context.
// Package otel implements it; stores accept it without importing OpenTelemetry.
type WriteTracer interface {
	TraceWriteStart(ctx context.Context, data TraceWriteStartData) context.Context
	TraceWriteEnd(ctx context.Context, data TraceWriteEndData)
}

// TraceWriteStartData is passed to [WriteTracer.TraceWriteStart].
type TraceWriteStartData struct {
	// Table is the outbox table written to.
	Table string
	// Events are the store's copies about to be written.
	Events []Event
}

// TraceWriteEndData is passed to [WriteTracer.TraceWriteEnd].
type TraceWriteEndData struct {
	Err error
}

// PublishTracer traces the relay's publishing. The relay calls
// TracePublishStart before it hands the messages of one topic in one batch to
// the broker, and TracePublishEnd with the outcome, before it records the
// outcome in the store. TracePublishStart may edit the messages' headers,
// e.g. to drop a malformed trace context.
type PublishTracer interface {
	TracePublishStart(ctx context.Context, data TracePublishStartData) context.Context
	TracePublishEnd(ctx context.Context, data TracePublishEndData)
}

// TracePublishStartData is passed to [PublishTracer.TracePublishStart].
type TracePublishStartData struct {
	Topic    string
	Messages []*Message
}

// TracePublishEndData is passed to [PublishTracer.TracePublishEnd].
type TracePublishEndData struct {
	Topic    string
	Messages []*Message
	// Errs holds one error per message, nil when the broker accepted it; Errs
	// is nil when all were accepted.
	Errs     []error
	Duration time.Duration
}

// SettleTracer is an optional interface of a [PublishTracer]: the relay calls
// TraceSettle once the outcome of a topic's messages in a batch has been
// recorded in the store. Metrics hang off it.
type SettleTracer interface {
	TraceSettle(ctx context.Context, data TraceSettleData)
}

// TraceSettleData counts what one batch did for one topic.
type TraceSettleData struct {
	Topic string
	// BatchSize is the number of messages of this topic in the batch.
	BatchSize int
	// Published were accepted by the broker and marked.
	Published int
	// Failed had a transient failure and were scheduled for a retry.
	Failed int
	// Released were put back without counting an attempt (broker
	// unreachable, skipped after a same-key failure, shutdown).
	Released int
	// Parked were given up on (permanent error or attempts used up).
	Parked int
	// PossibleDuplicates may be on the broker more than once: re-claimed
	// after a lost lease, marked too late, or failed with an outcome that
	// is unknown (outbox.ErrUnknownOutcome).
	PossibleDuplicates int
	// Lags holds, for each published message, the time from its write to
	// its publication: created_at (the database's now() in the writing
	// transaction, so it includes how long that transaction ran) to the
	// moment the broker accepted it, measured by the database clock at the
	// claim plus the relay's monotonic clock since.
	Lags []time.Duration
}

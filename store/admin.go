package store

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
)

// Admin is an optional interface of a [Store]: the operator's view of an
// outbox table, for cmd/outbox and dashboards. Find it by type assertion. It
// keeps the operator's queries in the store, next to the relay's, so that
// they use the same predicates and indexes.
//
// Parked events block the later events of their key (see [Failure.Park]);
// an operator either retries one (it becomes pending again and the relay
// publishes it) or skips it (it no longer blocks its key, is never published
// and, settled, is deleted after the retention as published events are). Both leave an audit record in the outbox_audit
// table (migration 3).
type Admin interface {
	// Now returns the database clock, for resolving relative times ("the
	// last 2h") the way the store computes every other time.
	Now(ctx context.Context) (time.Time, error)
	// TopicStats reports the backlog and recent publications of each topic
	// that has pending or parked events or published some in the last 15
	// minutes, ordered by topic.
	TopicStats(ctx context.Context) ([]TopicStats, error)
	// ListParked returns up to limit parked events with seq > afterSeq, in
	// seq order.
	ListParked(ctx context.Context, afterSeq int64, limit int) ([]Row, error)
	// GetEvent returns one event in whatever state; [ErrNotFound] if the
	// table has no event with that ID.
	GetEvent(ctx context.Context, id uuid.UUID) (Row, error)
	// RetryParked makes parked events pending again, with retry_count reset
	// and no backoff, so that the relay publishes them, and records each in
	// the audit table. It returns how many it retried (0 if none matched).
	RetryParked(ctx context.Context, p RetryParams) (int, error)
	// SkipParked gives a parked event up for good: it is marked published
	// without being sent (published_at set, parked_at kept, so it is told
	// apart from a published event), its key's later events are released,
	// and the audit table records who skipped it, when and why.
	// [ErrNotParked] if the event exists but is not parked.
	SkipParked(ctx context.Context, id uuid.UUID, a Action) error
	// ListPublished returns up to f.Limit published events that match f,
	// ordered by published_at, then seq: the order in which the relay
	// published them, which keeps each key's seq order. Skipped events were
	// never published and are never listed.
	ListPublished(ctx context.Context, f PublishedFilter) ([]Row, error)
}

// Errors of [Admin].
var (
	ErrNotFound  = errors.New("event not found")
	ErrNotParked = errors.New("event is not parked")
)

// TopicStats is the backlog and recent publications of one topic, by the
// database clock.
type TopicStats struct {
	// Topic is the topic column, or event_data's "topic" for rows of older
	// writers, as the relay reads it.
	Topic string
	// Pending, OldestPendingAge and Parked are as in [Stats].
	Pending          int64
	OldestPendingAge time.Duration
	Parked           int64
	// Published1m, Published5m and Published15m count the events published
	// in the last 1, 5 and 15 minutes.
	Published1m, Published5m, Published15m int64
}

// Row is an event as an operator sees it: a [Record] with its state.
type Row struct {
	Record
	// PublishedAt is zero while the event is pending or parked.
	PublishedAt time.Time
	// ParkedAt is zero unless the event is parked or was skipped.
	ParkedAt  time.Time
	LastError string
}

// State returns "pending", "parked", "published" or "skipped".
func (r *Row) State() string {
	switch {
	case r.PublishedAt.IsZero() && r.ParkedAt.IsZero():
		return "pending"
	case r.PublishedAt.IsZero():
		return "parked"
	case r.ParkedAt.IsZero():
		return "published"
	}
	return "skipped"
}

// Action says who acts on an event and why, for the audit record.
type Action struct {
	Actor  string
	Reason string
}

// RetryParams select the parked events of [Admin.RetryParked]: the one with
// ID if it is set, else those of Key if it is set, else any; always at most
// Limit, the first in seq order.
type RetryParams struct {
	ID    uuid.UUID
	Key   string
	Limit int
	Action
}

// PublishedFilter selects published events for [Admin.ListPublished]. Empty
// fields match everything.
type PublishedFilter struct {
	Topic         string
	AggregateType string
	AggregateID   string
	EventType     string
	// Since and Until bound published_at: Since <= published_at < Until.
	Since, Until time.Time
	// After pages through the events: when set, only those after it in the
	// order of ListPublished. Pass the last row of the previous page.
	After *Row
	// Limit is the largest number of events returned; it must be positive.
	Limit int
	// OmitPayload leaves Payload nil, for callers that need only IDs and
	// keys, such as an audit over a large table.
	OmitPayload bool
}

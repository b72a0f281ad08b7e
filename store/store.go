// Package store holds the relay-side storage contract of the outbox: the
// handful of operations the relay needs from a database, and their parameter
// and result types. Store adapters (store/postgres, store/mysql) implement
// [Store]; store/storetest checks that they keep its promises. Writing events
// is not part of the contract: each adapter writes with its native
// transaction type (pgx.Tx, *sql.Tx).
//
// All times that matter are computed by the database clock: leases, backoff,
// retention and ages. Go durations are only added to the database's now().
package store

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// Store is the relay's view of an outbox table. Implementations must be safe
// for concurrent use by several relays, in one process or many.
type Store interface {
	// Claim takes up to p.Limit pending events in seq order for p.Lease and
	// returns them. An event is pending when it is neither published nor
	// parked and its backoff (if any) has passed. A claim holds its events,
	// and every event of their keys, until each of its events is settled
	// (MarkPublished, Fail or Release) or its lease ends; no other claim
	// takes them meanwhile. An event is never claimed while an earlier
	// event with the same key, on any topic, waits for its backoff or is
	// parked. That is what keeps per-key order with several relays. Claims
	// are serialized between relays and hold no transaction open after they
	// return.
	//
	// A claim reads O(Limit) rows, not the backlog: it may return fewer
	// events than are claimable, or none, while the first rows of the
	// backlog are held by other claims (which end within their lease). Rows
	// held back by a backoff or a parked event never stop the events of
	// other keys.
	Claim(ctx context.Context, p ClaimParams) (Claim, error)
	// MarkPublished marks the events published and settles them, fenced by
	// the claim's token: events that the claim no longer holds (its lease
	// ended and another claim took them) are left alone and not counted in
	// the result.
	MarkPublished(ctx context.Context, token uuid.UUID, ids []uuid.UUID) (int, error)
	// Fail records a failed attempt of each event: retry_count+1, last_error,
	// and either next_attempt_at = now()+Delay or, when Park is set, parked;
	// and settles them. Fenced by token like MarkPublished.
	Fail(ctx context.Context, token uuid.UUID, failures []Failure) error
	// Release settles the events without counting an attempt; they are
	// pending again once the claim ends, or after delay if that is later.
	// Fenced by token like MarkPublished.
	Release(ctx context.Context, token uuid.UUID, ids []uuid.UUID, delay time.Duration) error
	// DeletePublished deletes at most limit settled events, published or
	// skipped (see [Admin.SkipParked]) more than olderThan ago, and returns
	// how many it deleted. It never deletes pending or parked events.
	DeletePublished(ctx context.Context, olderThan time.Duration, limit int) (int, error)
	// Stats reports the table's backlog.
	Stats(ctx context.Context) (Stats, error)
}

// ClaimParams are the parameters of [Store.Claim].
type ClaimParams struct {
	// Owner names the claiming relay in the claim, for operators.
	Owner string
	// Limit is the largest number of events to claim.
	Limit int
	// Lease is how long the claim holds the events. A relay that has not
	// settled them by then may lose them to the next claimer.
	Lease time.Duration
}

// Claim is the result of [Store.Claim].
type Claim struct {
	// Token fences the claim: a fresh value per claim.
	Token uuid.UUID
	// Records are the claimed events in seq order.
	Records []Record
	// Now is the database clock at the claim.
	Now time.Time
}

// Record is a claimed event.
type Record struct {
	ID  uuid.UUID
	Seq int64
	// Topic is the topic column, or event_data's "topic" for rows written by
	// older writers that left the column NULL; "" if neither exists.
	Topic         string
	Key           string // "" when event_key is NULL or empty: unordered
	EventType     string
	AggregateType string
	AggregateID   string
	Payload       []byte
	Headers       map[string]string
	// Attempts is retry_count: failed attempts so far.
	Attempts  int
	CreatedAt time.Time
	// Reclaimed is set when an earlier claim of the event ended without
	// settling it (its relay crashed or stalled past the lease): that relay
	// may have published it already.
	Reclaimed bool
}

// Failure is one failed attempt, for [Store.Fail].
type Failure struct {
	ID uuid.UUID
	// Err is stored in last_error, truncated to MaxErrorBytes.
	Err string
	// Delay is the backoff before the next attempt.
	Delay time.Duration
	// Park gives the event up: it stays in the table, parked, and blocks
	// later events of its key until an operator retries or skips it.
	Park bool
}

// Stats is the backlog of a table, by the database clock.
type Stats struct {
	// Pending counts events neither published nor parked.
	Pending int64
	// OldestPendingAge is the age of the oldest pending event, 0 if none.
	OldestPendingAge time.Duration
	// Parked counts parked events.
	Parked int64
}

// Deleter is an optional interface of a [Store]: publish-and-delete, for
// users who need no record of published events.
type Deleter interface {
	// DeletePublishedNow deletes the events instead of marking them
	// published, and settles them; fenced by token like
	// [Store.MarkPublished], it returns how many it deleted.
	DeletePublishedNow(ctx context.Context, token uuid.UUID, ids []uuid.UUID) (int, error)
}

// Waker is an optional interface of a [Store]: a store that knows when events
// were written (by this process, or through a database notification) offers
// wake-ups, so a relay publishes without waiting for its next poll.
type Waker interface {
	// Subscribe returns a channel that receives a value after events were
	// written, and a function that ends the subscription.
	Subscribe() (<-chan struct{}, func())
}

// MaxErrorBytes bounds last_error: stores truncate longer messages.
const MaxErrorBytes = 4096

// TruncateError returns msg cut to MaxErrorBytes on a UTF-8 boundary.
func TruncateError(msg string) string {
	if len(msg) <= MaxErrorBytes {
		return msg
	}
	cut := MaxErrorBytes
	for cut > 0 && msg[cut]&0xC0 == 0x80 {
		cut--
	}
	return msg[:cut]
}

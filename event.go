package outbox

import (
	"cmp"
	"context"
	"encoding/json"
	"maps"

	"github.com/google/uuid"
)

// Event is what a service writes into the outbox.
//
// Payload is published byte for byte as the message value; it must be valid
// JSON. Most services build it from an [Envelope] with [Envelope.Event].
type Event struct {
	// ID identifies the event everywhere: in the table, as the message's
	// Watermill UUID and for consumer dedupe. A zero ID gets a new UUIDv7.
	ID uuid.UUID
	// Topic is the destination topic. Required.
	Topic string
	// Key orders events: events with the same key are published in the order
	// they were written, to the same partition. Defaults to AggregateID.
	// Required unless Unordered is set.
	Key string
	// Unordered marks an event that needs no key and no ordering.
	Unordered bool
	// AggregateType and AggregateID name the business entity, e.g. "batch"
	// and its ID.
	AggregateType string
	AggregateID   string
	// EventType names the event, e.g. "batch.spellcheck.initiated.v1". Required.
	EventType string
	// Payload is the message value, valid JSON, usually the envelope JSON.
	Payload json.RawMessage
	// Headers travel with the message (trace context, correlation ID, other
	// metadata). [HeaderMessageUUID] is set by the relay and rejected
	// here.
	Headers map[string]string
}

// Prepare returns copies of events ready to be written, or the first
// validation error. It fills the defaults (a UUIDv7 for a zero ID, the
// aggregate ID as the key, a correlation ID from the context or a new one when
// the event carries none), clones the headers so that hooks may edit them, and
// validates each event against limits. Stores call it before any SQL runs.
func Prepare(ctx context.Context, limits Limits, events []Event) ([]Event, error) {
	out := make([]Event, len(events))
	ctxCorrelation := CorrelationID(ctx)
	for i, e := range events {
		if e.ID == uuid.Nil {
			e.ID = NewID()
		}
		if e.Key == "" && !e.Unordered {
			e.Key = e.AggregateID
		}
		h := make(map[string]string, len(e.Headers)+3)
		maps.Copy(h, e.Headers)
		if h[HeaderCorrelationID] == "" {
			h[HeaderCorrelationID] = cmp.Or(ctxCorrelation, uuid.NewString())
		}
		e.Headers = h
		if err := e.validate(limits); err != nil {
			err.Index = i
			return nil, err
		}
		out[i] = e
	}
	return out, nil
}

// NewID returns a new UUIDv7: time-ordered, so IDs sort roughly by creation.
func NewID() uuid.UUID {
	id, err := uuid.NewV7()
	if err != nil {
		// uuid.NewV7 fails only if the system's random source fails.
		panic("outbox: cannot generate UUIDv7: " + err.Error())
	}
	return id
}

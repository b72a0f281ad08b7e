package outbox

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Envelope is the JSON envelope the Python services publish and consume
// (their EventEnvelope). Its JSON names and shapes are the wire contract: a Go
// consumer decodes what a Python producer wrote and the other way round.
//
// EventTimestamp is written truncated to microseconds, the precision of
// Python's datetime; a timestamp without an offset, as Python writes a naive
// datetime, is read as UTC. The Python model types CorrelationID as a UUID,
// so envelopes that Python services consume carry one.
type Envelope[T any] struct {
	EventID        uuid.UUID      `json:"event_id"`
	EventType      string         `json:"event_type"`
	EventTimestamp time.Time      `json:"event_timestamp"`
	SourceService  string         `json:"source_service"`
	SchemaVersion  int            `json:"schema_version"`
	CorrelationID  string         `json:"correlation_id"`
	Data           T              `json:"data"`
	Metadata       map[string]any `json:"metadata"`
}

// Event returns the event that carries env to topic: the payload is the
// envelope JSON, the event ID is the envelope's (a new UUIDv7 when zero), the
// key is aggregateID and the envelope's correlation ID (a new one when empty)
// goes into the headers. A zero timestamp becomes now (UTC) and a zero schema
// version 1, as the Python model's defaults do.
func (env Envelope[T]) Event(topic, aggregateType, aggregateID string) (Event, error) {
	if env.EventID == uuid.Nil {
		env.EventID = NewID()
	}
	if env.EventTimestamp.IsZero() {
		env.EventTimestamp = time.Now().UTC()
	}
	env.SchemaVersion = cmp.Or(env.SchemaVersion, 1)
	env.CorrelationID = cmp.Or(env.CorrelationID, uuid.NewString())
	payload, err := json.Marshal(env)
	if err != nil {
		return Event{}, fmt.Errorf("outbox: marshal envelope %s: %w", env.EventType, err)
	}
	return Event{
		ID:            env.EventID,
		Topic:         topic,
		Key:           aggregateID,
		AggregateType: aggregateType,
		AggregateID:   aggregateID,
		EventType:     env.EventType,
		Payload:       payload,
		Headers:       map[string]string{HeaderCorrelationID: env.CorrelationID},
	}, nil
}

// DecodeEnvelope decodes an envelope JSON, as published by this package or by
// the Python services.
func DecodeEnvelope[T any](payload []byte) (Envelope[T], error) {
	var env Envelope[T]
	if err := json.Unmarshal(payload, &env); err != nil {
		return env, fmt.Errorf("outbox: decode envelope: %w", err)
	}
	return env, nil
}

// envelopeFields is Envelope without its JSON methods.
type envelopeFields[T any] Envelope[T]

// MarshalJSON writes the envelope with its timestamp truncated to
// microseconds.
func (env Envelope[T]) MarshalJSON() ([]byte, error) {
	f := envelopeFields[T](env)
	f.EventTimestamp = f.EventTimestamp.Truncate(time.Microsecond)
	return json.Marshal(f)
}

// UnmarshalJSON reads an envelope; its timestamp may have an offset, "Z" or
// none (then it is UTC).
func (env *Envelope[T]) UnmarshalJSON(b []byte) error {
	w := struct {
		*envelopeFields[T]
		EventTimestamp json.RawMessage `json:"event_timestamp"`
	}{envelopeFields: (*envelopeFields[T])(env)}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	if len(w.EventTimestamp) == 0 || bytes.Equal(w.EventTimestamp, []byte("null")) {
		return nil
	}
	var s string
	if err := json.Unmarshal(w.EventTimestamp, &s); err != nil {
		return fmt.Errorf("event_timestamp: %w", err)
	}
	t, err := parseTimestamp(s)
	if err != nil {
		return err
	}
	env.EventTimestamp = t
	return nil
}

// parseTimestamp reads an RFC 3339 timestamp, or one without an offset as
// UTC. Parsing accepts any fraction of a second.
func parseTimestamp(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	t, err := time.ParseInLocation("2006-01-02T15:04:05", s, time.UTC)
	if err != nil {
		return time.Time{}, fmt.Errorf("event_timestamp %q: want ISO 8601 with or without an offset", s)
	}
	return t, nil
}

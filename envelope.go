package outbox

import (
	"cmp"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Envelope is the JSON envelope the Python services publish and consume
// (their EventEnvelope). Its JSON names and shapes are the wire contract: a Go
// consumer decodes what a Python producer wrote and the other way round.
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

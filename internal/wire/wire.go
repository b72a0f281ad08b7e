// Package wire turns a claimed outbox row into the message that carries it to
// a broker, in the wire format the Python services and Watermill consumers
// read. The relay and the operator CLI (replay) share it.
package wire

import (
	"encoding/json"
	"maps"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/store"
)

// Message returns the message that carries rec to the broker: value = payload,
// key = event key, headers = the stored headers plus HeaderMessageUUID (the
// event ID), HeaderEventType, HeaderAggregateType, HeaderAggregateID and
// HeaderCorrelationID (for rows from older writers, taken from the
// envelope's correlation_id).
func Message(rec *store.Record) *outbox.Message {
	h := make(map[string]string, len(rec.Headers)+5)
	maps.Copy(h, rec.Headers)
	h[outbox.HeaderMessageUUID] = rec.ID.String()
	h[outbox.HeaderEventType] = rec.EventType
	setIf(h, outbox.HeaderAggregateType, rec.AggregateType)
	setIf(h, outbox.HeaderAggregateID, rec.AggregateID)
	if h[outbox.HeaderCorrelationID] == "" {
		var env struct {
			CorrelationID string `json:"correlation_id"`
		}
		if json.Unmarshal(rec.Payload, &env) == nil {
			setIf(h, outbox.HeaderCorrelationID, env.CorrelationID)
		}
	}
	return &outbox.Message{
		ID: rec.ID, Topic: rec.Topic, Key: rec.Key, Value: rec.Payload, Headers: h,
		Attempts: rec.Attempts, CreatedAt: rec.CreatedAt, Reclaimed: rec.Reclaimed,
	}
}

func setIf(h map[string]string, k, v string) {
	if v != "" {
		h[k] = v
	}
}

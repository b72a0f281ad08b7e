package outbox

import (
	"time"

	"github.com/google/uuid"
)

// Message is one event on its way from the relay to a broker: what a
// broker adapter publishes.
type Message struct {
	// ID is the event ID.
	ID uuid.UUID
	// Topic is the destination.
	Topic string
	// Key is the partition key; "" means no key (an unordered event).
	Key string
	// Value is the event payload, published byte for byte.
	Value []byte
	// Headers holds the stored headers plus the ones the relay sets from the
	// row: HeaderMessageUUID, HeaderEventType, HeaderAggregateType,
	// HeaderAggregateID and HeaderCorrelationID.
	Headers map[string]string
	// Attempts is how many failed attempts the event had before this one.
	Attempts int
	// Reclaimed is set when an earlier claim of the event never settled
	// (its relay crashed or stalled past the lease, or its publisher left
	// it in doubt): the event may be on the broker already. A publisher
	// that can look up what it published earlier checks such a message
	// before it publishes it again (see broker.Publisher).
	Reclaimed bool
	// CreatedAt is when the event was written, by the database clock.
	CreatedAt time.Time
}

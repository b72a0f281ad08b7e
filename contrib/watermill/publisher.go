package outboxwatermill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker/wmbroker"
)

// MetadataPartitionKey is the metadata key from which [Publisher] takes an
// event's key by default, and in which the relay's Watermill adapter
// carries it on (wmbroker.MetadataPartitionKey).
const MetadataPartitionKey = wmbroker.MetadataPartitionKey

// ErrInvalidUUID is the [outbox.ValidationError] sentinel for a message
// whose UUID is not a UUID in canonical form: the event ID must be one, and
// it reaches consumers as the message UUID unchanged.
var ErrInvalidUUID = errors.New("message UUID is not a canonical UUID")

// ErrPublisherClosed is returned by [Publisher.Publish] after Close.
var ErrPublisherClosed = errors.New("outboxwatermill: publisher closed")

// TxWriter writes events into the outbox inside a transaction of type Tx:
// *postgres.Store with pgx.Tx, *mysql.Store with *sql.Tx.
type TxWriter[Tx any] interface {
	AddTx(ctx context.Context, tx Tx, events ...outbox.Event) error
}

// KeyFunc returns the key of the event that carries msg to topic: events
// with the same key are published in order, to the same partition. "" makes
// the event unordered.
type KeyFunc func(topic string, msg *message.Message) string

// EventTypeFunc returns the event type of the event that carries msg to
// topic.
type EventTypeFunc func(topic string, msg *message.Message) string

// PublisherOption configures [NewPublisher].
type PublisherOption func(*Publisher)

// WithKeyFunc sets how the event key is chosen. The default takes the
// metadata [MetadataPartitionKey], else the metadata aggregate_id
// ([outbox.HeaderAggregateID]), else publishes the event unordered.
func WithKeyFunc(f KeyFunc) PublisherOption {
	return func(p *Publisher) { p.key = f }
}

// WithEventTypeFunc sets how the event type is chosen. The default takes the
// metadata event_type ([outbox.HeaderEventType]), else the topic, as the
// Python services do.
func WithEventTypeFunc(f EventTypeFunc) PublisherOption {
	return func(p *Publisher) { p.eventType = f }
}

// Publisher is a Watermill message.Publisher that writes messages into the
// outbox inside one database transaction instead of sending them. The relay
// publishes them once the transaction commits, and never if it rolls back.
//
// Publish is synchronous: when it returns nil, the messages are written in
// the transaction. Each message becomes one event:
//
//   - event ID = message UUID, which must be a canonical lowercase UUID
//     (watermill.NewUUID makes one); an empty UUID gets a new UUIDv7, written
//     back to the message. Anything else is rejected with [ErrInvalidUUID].
//   - payload = message payload, byte for byte; it must be valid JSON.
//   - headers = metadata, all of it, correlation_id included; a
//     _watermill_message_uuid entry must equal the UUID and is dropped, as
//     the relay sets it from the event ID.
//   - topic = the Publish topic; key, event type: see [WithKeyFunc] and
//     [WithEventTypeFunc]; aggregate type and ID from the metadata
//     aggregate_type and aggregate_id.
//
// The messages of one call are written together, all or none, under the
// first message's context: it carries the trace context and, for messages
// without correlation_id, the correlation ID stored with the events. In a
// handler, msg.SetContext(ctx) with the handler's context links the
// published messages to the consumed one.
//
// An invalid message fails the call with an [outbox.ValidationError] before
// any SQL runs, so the transaction stays usable. A failed statement aborts a
// PostgreSQL transaction, as any failed statement does; one such failure is
// a UUID already in the outbox: an event has one ID, so the same message
// cannot be published to two topics (copy it with a new UUID instead).
//
// Publish is safe for concurrent use: calls are serialized, since a
// transaction runs one statement at a time. Close does not end the
// transaction, which the caller owns.
type Publisher struct {
	add       func(ctx context.Context, events ...outbox.Event) error
	key       KeyFunc
	eventType EventTypeFunc

	mu     sync.Mutex
	closed bool
}

var _ message.Publisher = (*Publisher)(nil)

// NewPublisher returns a publisher that writes into the outbox of st inside
// tx. Create one per transaction; it is cheap.
func NewPublisher[Tx any](st TxWriter[Tx], tx Tx, opts ...PublisherOption) *Publisher {
	p := &Publisher{
		add: func(ctx context.Context, events ...outbox.Event) error {
			return st.AddTx(ctx, tx, events...)
		},
		key:       defaultKey,
		eventType: defaultEventType,
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func defaultKey(_ string, msg *message.Message) string {
	if k := msg.Metadata.Get(MetadataPartitionKey); k != "" {
		return k
	}
	return msg.Metadata.Get(outbox.HeaderAggregateID)
}

func defaultEventType(topic string, msg *message.Message) string {
	if t := msg.Metadata.Get(outbox.HeaderEventType); t != "" {
		return t
	}
	return topic
}

// Publish implements message.Publisher: it writes msgs as events to topic
// inside the publisher's transaction.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrPublisherClosed
	}
	events := make([]outbox.Event, len(msgs))
	for i, msg := range msgs {
		e, err := p.event(topic, msg)
		if err != nil {
			err.Index = i
			return fmt.Errorf("outboxwatermill: publish to %s: %w", topic, err)
		}
		events[i] = e
	}
	if len(events) == 0 {
		return nil
	}
	if err := p.add(msgs[0].Context(), events...); err != nil {
		return fmt.Errorf("outboxwatermill: publish to %s: %w", topic, err)
	}
	return nil
}

// event maps msg to the event that carries it.
func (p *Publisher) event(topic string, msg *message.Message) (outbox.Event, *outbox.ValidationError) {
	var id uuid.UUID
	if msg.UUID == "" {
		id = outbox.NewID()
		msg.UUID = id.String()
	} else {
		var err error
		// Only the canonical form survives the trip unchanged: the relay
		// writes the ID back as lowercase hyphenated text.
		if id, err = uuid.Parse(msg.UUID); err != nil || id.String() != msg.UUID {
			return outbox.Event{}, &outbox.ValidationError{Err: ErrInvalidUUID,
				Detail: fmt.Sprintf("%q: want lowercase xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, e.g. watermill.NewUUID()", msg.UUID)}
		}
	}
	headers := make(map[string]string, len(msg.Metadata))
	for k, v := range msg.Metadata {
		if k == outbox.HeaderMessageUUID {
			if v != msg.UUID {
				return outbox.Event{}, &outbox.ValidationError{EventID: id, Err: outbox.ErrReservedHeader,
					Detail: fmt.Sprintf("metadata %s = %q contradicts the message UUID", k, v)}
			}
			continue
		}
		headers[k] = v
	}
	key := p.key(topic, msg)
	return outbox.Event{
		ID:            id,
		Topic:         topic,
		Key:           key,
		Unordered:     key == "",
		AggregateType: msg.Metadata.Get(outbox.HeaderAggregateType),
		AggregateID:   msg.Metadata.Get(outbox.HeaderAggregateID),
		EventType:     p.eventType(topic, msg),
		Payload:       json.RawMessage(msg.Payload),
		Headers:       headers,
	}, nil
}

// Close implements message.Publisher. Later Publish calls fail with
// [ErrPublisherClosed]; the transaction is left alone.
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	return nil
}

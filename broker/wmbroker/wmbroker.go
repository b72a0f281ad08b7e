// Package wmbroker publishes outbox messages through any Watermill
// message.Publisher (watermill-amqp, watermill-kafka, ...): the relay's
// broker.Publisher over Watermill. broker/kafka is the Kafka adapter of
// choice; this one is for the other brokers Watermill reaches.
package wmbroker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"syscall"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outbox"
)

// MetadataPartitionKey is the Watermill metadata that carries the event key,
// so that a marshaler can partition by it (watermill-kafka's partitioning
// marshaler, or contrib/watermill/wmkafka's Marshaler).
const MetadataPartitionKey = "partition_key"

// Publisher publishes through any Watermill message.Publisher. Each message is
// published with its own Publish call, so that each gets its own outcome; use
// broker/kafka for Kafka, which produces a batch in bulk.
//
// The message UUID is the event ID; the metadata are the message headers
// without HeaderMessageUUID (Watermill marshalers add it from the UUID),
// plus the event key as [MetadataPartitionKey] when the event has one.
//
// Once a message fails as unreachable, the later ones of the call are not
// sent: they fail as unreachable too.
type Publisher struct {
	pub      message.Publisher
	classify func(error) error
}

// Option configures [New].
type Option func(*Publisher)

// WithClassifier sets the function that wraps a publisher's errors with
// [outbox.ErrPermanent], [outbox.ErrUnreachable] and
// [outbox.ErrUnknownOutcome]. The default is conservative, since a
// Watermill publisher does not say whether a failed message reached the
// broker: a refused connection or an unreachable host is unreachable and was
// not sent; a reset connection is unreachable with an unknown outcome (it
// may break after the write); every other error has an unknown outcome. An
// error the publisher already classified is left as it is.
func WithClassifier(classify func(error) error) Option {
	return func(w *Publisher) { w.classify = classify }
}

// New returns a publisher over pub. The caller keeps ownership of pub and
// closes it.
func New(pub message.Publisher, opts ...Option) *Publisher {
	w := &Publisher{pub: pub, classify: classifyNetError}
	for _, o := range opts {
		o(w)
	}
	return w
}

// Publish implements broker.Publisher.
func (w *Publisher) Publish(ctx context.Context, msgs []*outbox.Message) []error {
	var errs []error
	failed := map[[2]string]bool{}
	var unreachable error
	for i, m := range msgs {
		var err error
		switch k := [2]string{m.Topic, m.Key}; {
		case ctx.Err() != nil:
			err = ctx.Err()
		case m.Key != "" && failed[k]:
			err = outbox.ErrSkipped
		case unreachable != nil:
			err = fmt.Errorf("%w: not sent after %v", outbox.ErrUnreachable, unreachable)
			failed[k] = true
		default:
			if err = w.pub.Publish(m.Topic, ToMessage(ctx, m)); err != nil {
				err = w.classify(fmt.Errorf("publish %s: %w", m.Topic, err))
				failed[k] = true
				if errors.Is(err, outbox.ErrUnreachable) {
					unreachable = err
				}
			}
		}
		if err != nil {
			if errs == nil {
				errs = make([]error, len(msgs))
			}
			errs[i] = err
		}
	}
	return errs
}

// ToMessage converts m into a Watermill message: UUID = event ID, payload =
// value, metadata = headers (without HeaderMessageUUID), and the key as
// [MetadataPartitionKey] when m has one.
func ToMessage(ctx context.Context, m *outbox.Message) *message.Message {
	wm := message.NewMessage(m.ID.String(), m.Value)
	wm.Metadata = make(message.Metadata, len(m.Headers)+1)
	maps.Copy(wm.Metadata, m.Headers)
	delete(wm.Metadata, outbox.HeaderMessageUUID)
	if m.Key != "" {
		wm.Metadata[MetadataPartitionKey] = m.Key
	}
	wm.SetContext(ctx)
	return wm
}

func classifyNetError(err error) error {
	switch {
	case errors.Is(err, outbox.ErrPermanent) || errors.Is(err, outbox.ErrUnreachable) || errors.Is(err, outbox.ErrUnknownOutcome):
		return err // classified by the publisher
	case errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH):
		return fmt.Errorf("%w: %w", outbox.ErrUnreachable, err)
	case errors.Is(err, syscall.ECONNRESET):
		return fmt.Errorf("%w: %w: %w", outbox.ErrUnreachable, outbox.ErrUnknownOutcome, err)
	}
	return fmt.Errorf("%w: %w", outbox.ErrUnknownOutcome, err)
}

package broker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"syscall"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outbox"
)

// Watermill publishes through any Watermill message.Publisher. Each message is
// published with its own Publish call, so that each gets its own outcome; use
// broker/kafka for Kafka, which produces a batch in bulk.
//
// The message UUID is the event ID; the metadata are the message headers
// without HeaderMessageUUID (Watermill marshalers add it from the UUID).
type Watermill struct {
	pub      message.Publisher
	classify func(error) error
}

// WatermillOption configures [NewWatermill].
type WatermillOption func(*Watermill)

// WithClassifier sets the function that wraps a publisher's errors with
// [outbox.ErrPermanent] or [outbox.ErrUnreachable]. The default classifies
// connection-refused and connection-reset errors as unreachable and leaves
// everything else transient.
func WithClassifier(classify func(error) error) WatermillOption {
	return func(w *Watermill) { w.classify = classify }
}

// NewWatermill returns a [Publisher] over pub. The caller keeps ownership of
// pub and closes it.
func NewWatermill(pub message.Publisher, opts ...WatermillOption) *Watermill {
	w := &Watermill{pub: pub, classify: classifyNetError}
	for _, o := range opts {
		o(w)
	}
	return w
}

// Publish implements [Publisher].
func (w *Watermill) Publish(ctx context.Context, msgs []*outbox.Message) []error {
	var errs []error
	failed := map[[2]string]bool{}
	for i, m := range msgs {
		var err error
		switch k := [2]string{m.Topic, m.Key}; {
		case ctx.Err() != nil:
			err = ctx.Err()
		case m.Key != "" && failed[k]:
			err = outbox.ErrSkipped
		default:
			if err = w.pub.Publish(m.Topic, ToWatermill(ctx, m)); err != nil {
				err = w.classify(fmt.Errorf("publish %s: %w", m.Topic, err))
				failed[k] = true
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

// ToWatermill converts m into a Watermill message: UUID = event ID, payload =
// value, metadata = headers (without HeaderMessageUUID).
func ToWatermill(ctx context.Context, m *outbox.Message) *message.Message {
	wm := message.NewMessage(m.ID.String(), m.Value)
	wm.Metadata = make(message.Metadata, len(m.Headers))
	maps.Copy(wm.Metadata, m.Headers)
	delete(wm.Metadata, outbox.HeaderMessageUUID)
	wm.SetContext(ctx)
	return wm
}

func classifyNetError(err error) error {
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EHOSTUNREACH) {
		return fmt.Errorf("%w: %w", outbox.ErrUnreachable, err)
	}
	return err
}

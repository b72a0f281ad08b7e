package outboxamqp

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/hashicorp/go-multierror"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/outboxkit/outbox"
)

// Classify classifies the errors of a watermill-amqp publisher for
// wmbroker.WithClassifier, by the step of its Publish that failed:
//
//   - not connected (watermill-amqp is reconnecting), or no channel could be
//     opened: unreachable, and the message was not sent;
//   - the server refused a step before the message (declaring the exchange):
//     transient, not sent;
//   - the message was written but not confirmed (the connection broke, or
//     the broker nacked it), or the channel did not close after it:
//     unreachable with an unknown outcome, since the broker may have it;
//   - anything else: an unknown outcome.
//
// An error already classified is left as it is.
func Classify(err error) error {
	msg := err.Error()
	var amqpErr *amqp.Error
	var closeErr *multierror.Error // watermill-amqp appends the channel's close error
	switch {
	case errors.Is(err, outbox.ErrPermanent) || errors.Is(err, outbox.ErrUnreachable) || errors.Is(err, outbox.ErrUnknownOutcome):
		return err
	case strings.Contains(msg, "not connected to AMQP"), strings.Contains(msg, "cannot open channel"),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return fmt.Errorf("%w: %w", outbox.ErrUnreachable, err)
	case strings.Contains(msg, "delivery not confirmed"), errors.As(err, &closeErr),
		errors.Is(err, amqp.ErrClosed), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return fmt.Errorf("%w: %w: %w", outbox.ErrUnreachable, outbox.ErrUnknownOutcome, err)
	case errors.As(err, &amqpErr):
		return err
	}
	return fmt.Errorf("%w: %w", outbox.ErrUnknownOutcome, err)
}

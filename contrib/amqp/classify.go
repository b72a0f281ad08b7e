package outboxamqp

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/outboxkit/outbox"
)

// Classify classifies the errors of a watermill-amqp publisher for
// wmbroker.WithClassifier:
//
//   - not connected (watermill-amqp is reconnecting), a closed channel or
//     connection, a refused connection: unreachable, and the message was
//     not sent;
//   - a delivery not confirmed (the connection broke while the publish
//     waited for its confirm, or the broker nacked it): unreachable, with an
//     unknown outcome;
//   - an error the broker answered before the message (declaring the
//     exchange): transient, not sent;
//   - anything else: an unknown outcome.
//
// An error already classified is left as it is.
func Classify(err error) error {
	var amqpErr *amqp.Error
	switch msg := err.Error(); {
	case errors.Is(err, outbox.ErrPermanent) || errors.Is(err, outbox.ErrUnreachable) || errors.Is(err, outbox.ErrUnknownOutcome):
		return err
	case strings.Contains(msg, "delivery not confirmed"),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return fmt.Errorf("%w: %w: %w", outbox.ErrUnreachable, outbox.ErrUnknownOutcome, err)
	case strings.Contains(msg, "not connected to AMQP"), errors.Is(err, amqp.ErrClosed),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return fmt.Errorf("%w: %w", outbox.ErrUnreachable, err)
	case errors.As(err, &amqpErr):
		return err
	}
	return fmt.Errorf("%w: %w", outbox.ErrUnknownOutcome, err)
}

package outboxamqp_test

import (
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/hashicorp/go-multierror"
	pkgerrors "github.com/pkg/errors"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
	outboxamqp "github.com/outboxkit/outbox/contrib/amqp"
)

// Each error watermill-amqp's Publish returns, wrapped as it wraps it, gets
// the class of the step that failed: before the message (not connected, no
// channel) unreachable and not sent; the server refusing the exchange, not
// sent; after the message was written (no confirm, a broken connection, the
// channel's close failing after it) unreachable with an unknown outcome;
// anything else an unknown outcome.
func TestClassify(t *testing.T) {
	t.Parallel()
	publish := func(err error) error { return fmt.Errorf("publish orders: %w", err) } // as wmbroker wraps it
	for _, tc := range []struct {
		err                  error
		unreachable, unknown bool
	}{
		{publish(errors.New("not connected to AMQP")), true, false},
		{publish(pkgerrors.Wrap(fmt.Errorf("create AMQP channel: %w", amqp.ErrClosed), "cannot open channel")), true, false},
		{fmt.Errorf("dial tcp 127.0.0.1:5672: %w", syscall.ECONNREFUSED), true, false},
		{publish(&amqp.Error{Code: amqp.PreconditionFailed, Reason: "PRECONDITION_FAILED - inequivalent arg 'type'"}), false, false},
		{publish(fmt.Errorf("delivery not confirmed for message [%s]", outbox.NewID())), true, true},
		{publish(multierror.Append(nil, amqp.ErrClosed)), true, true},
		{publish(multierror.Append(&amqp.Error{Code: amqp.ChannelError, Reason: "channel close"}, &amqp.Error{Code: amqp.FrameError})), true, true},
		{publish(pkgerrors.Wrap(amqp.ErrClosed, "cannot publish msg")), true, true},
		{publish(pkgerrors.Wrap(fmt.Errorf("write: %w", syscall.EPIPE), "cannot publish msg")), true, true},
		{publish(errors.New("something else")), false, true},
		{fmt.Errorf("%w: too large", outbox.ErrPermanent), false, false},
	} {
		err := outboxamqp.Classify(tc.err)
		require.Equal(t, tc.unreachable, errors.Is(err, outbox.ErrUnreachable), "unreachable: %v", tc.err)
		require.Equal(t, tc.unknown, errors.Is(err, outbox.ErrUnknownOutcome), "unknown outcome: %v", tc.err)
		require.ErrorIs(t, err, tc.err)
	}
}

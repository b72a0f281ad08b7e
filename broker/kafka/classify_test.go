package kafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	timeout := &net.OpError{Op: "read", Net: "tcp", Err: context.DeadlineExceeded}
	for _, tc := range []struct {
		err  error
		want error // nil means transient
	}{
		{sarama.ErrMessageSizeTooLarge, outbox.ErrPermanent},
		{sarama.ErrMessageSetSizeTooLarge, outbox.ErrPermanent},
		{sarama.ErrInvalidTopic, outbox.ErrPermanent},
		{sarama.ErrInvalidRecord, outbox.ErrPermanent},
		{sarama.ErrOutOfBrokers, outbox.ErrUnreachable},
		{fmt.Errorf("%w: %w", sarama.ErrOutOfBrokers, timeout), outbox.ErrUnreachable},
		{sarama.ErrNotConnected, outbox.ErrUnreachable},
		{sarama.ErrLeaderNotAvailable, outbox.ErrUnreachable},
		{sarama.ErrNotLeaderForPartition, outbox.ErrUnreachable},
		{sarama.ErrRequestTimedOut, outbox.ErrUnreachable},
		{sarama.ErrNotEnoughReplicas, outbox.ErrUnreachable},
		{timeout, outbox.ErrUnreachable},
		{&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, outbox.ErrUnreachable},
		{syscall.ECONNRESET, outbox.ErrUnreachable},
		{sarama.ErrUnknownTopicOrPartition, nil},
		{sarama.ErrShuttingDown, nil},
		{errors.New("something else"), nil},
	} {
		got := classify(fmt.Errorf("produce: %w", tc.err))
		require.ErrorIs(t, got, tc.err)
		for _, class := range []error{outbox.ErrPermanent, outbox.ErrUnreachable} {
			require.Equal(t, class == tc.want, errors.Is(got, class), "%v as %v", tc.err, class)
		}
	}
}

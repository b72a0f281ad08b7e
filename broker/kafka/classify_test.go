package kafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outboxkit/outbox"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	timeout := &net.OpError{Op: "read", Net: "tcp", Err: context.DeadlineExceeded}
	for _, tc := range []struct {
		err     error
		want    error // nil means transient
		refused bool  // the broker refused the batch before any append
	}{
		{kerr.MessageTooLarge, outbox.ErrPermanent, true},
		{fmt.Errorf("%w (uncompressed_bytes=20000)", kerr.MessageTooLarge), outbox.ErrPermanent, true},
		{kerr.RecordListTooLarge, outbox.ErrPermanent, true},
		{kerr.InvalidTopicException, outbox.ErrPermanent, true},
		{kerr.InvalidRecord, outbox.ErrPermanent, true},
		{kgo.ErrRecordTimeout, outbox.ErrUnreachable, false},
		{kgo.ErrAborting, outbox.ErrUnreachable, false},
		{context.DeadlineExceeded, outbox.ErrUnreachable, false},
		{kerr.LeaderNotAvailable, outbox.ErrUnreachable, false},
		{kerr.NotLeaderForPartition, outbox.ErrUnreachable, false},
		{kerr.RequestTimedOut, outbox.ErrUnreachable, false},
		{kerr.NotEnoughReplicas, outbox.ErrUnreachable, false},
		{kerr.NotEnoughReplicasAfterAppend, outbox.ErrUnreachable, false},
		{timeout, outbox.ErrUnreachable, false},
		{&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, outbox.ErrUnreachable, false},
		{syscall.ECONNRESET, outbox.ErrUnreachable, false},
		{kerr.CoordinatorNotAvailable, outbox.ErrUnreachable, false},
		{kerr.NotCoordinator, outbox.ErrUnreachable, false},
		{kerr.ConcurrentTransactions, outbox.ErrUnreachable, false},
		{kerr.ProducerFenced, outbox.ErrUnreachable, false},
		{kerr.InvalidProducerEpoch, outbox.ErrUnreachable, false},
		{kerr.TransactionAbortable, outbox.ErrUnreachable, false},
		{kerr.UnknownTopicOrPartition, nil, false},
		{kerr.TopicAuthorizationFailed, nil, false},
		{context.Canceled, nil, false},
		{errors.New("something else"), nil, false},
	} {
		got := classify(fmt.Errorf("produce: %w", tc.err))
		require.ErrorIs(t, got, tc.err)
		for _, class := range []error{outbox.ErrPermanent, outbox.ErrUnreachable} {
			require.Equal(t, class == tc.want, errors.Is(got, class), "%v as %v", tc.err, class)
		}
		require.Equal(t, tc.refused, refused(tc.err), "%v refused", tc.err)
	}
	require.ErrorContains(t, classify(kerr.MessageTooLarge), "too large")
}

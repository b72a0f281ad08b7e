package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outboxkit/outbox"
)

// permanentErrors are answers that no retry changes: the message itself is
// wrong for the topic. The broker refuses such a batch before appending
// anything of it.
var permanentErrors = []error{
	kerr.MessageTooLarge,
	kerr.RecordListTooLarge,
	kerr.InvalidTopicException,
	kerr.InvalidRecord,
}

// unreachableErrors mean the cluster could not take the message at all: no
// broker answered in time, or the partition had no leader or not enough
// replicas. The relay does not count an attempt for them.
var unreachableErrors = []error{
	kgo.ErrRecordTimeout,
	kgo.ErrAborting,
	context.DeadlineExceeded,
	kerr.LeaderNotAvailable,
	kerr.NotLeaderForPartition,
	kerr.BrokerNotAvailable,
	kerr.NetworkException,
	kerr.RequestTimedOut,
	kerr.NotEnoughReplicas,
	kerr.NotEnoughReplicasAfterAppend,
	kerr.KafkaStorageError,
	// In transactional mode: the transaction coordinator is away or busy
	// ending an earlier transaction, or another producer took over the
	// transactional ID. The message itself is fine.
	kerr.CoordinatorNotAvailable,
	kerr.NotCoordinator,
	kerr.CoordinatorLoadInProgress,
	kerr.ConcurrentTransactions,
	kerr.ProducerFenced,
	kerr.InvalidProducerEpoch,
	kerr.TransactionAbortable,
	io.EOF,
	io.ErrUnexpectedEOF,
	syscall.ECONNREFUSED,
	syscall.ECONNRESET,
	syscall.EPIPE,
	syscall.EHOSTUNREACH,
	syscall.ENETUNREACH,
}

// classify wraps a produce error with outbox.ErrPermanent or
// outbox.ErrUnreachable, or leaves it transient.
func classify(err error) error {
	if refused(err) {
		if errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) {
			return fmt.Errorf("%w: message too large for the topic: %w", outbox.ErrPermanent, err)
		}
		return fmt.Errorf("%w: %w", outbox.ErrPermanent, err)
	}
	var netErr net.Error
	unreachable := errors.As(err, &netErr)
	for _, target := range unreachableErrors {
		unreachable = unreachable || errors.Is(err, target)
	}
	if unreachable {
		return fmt.Errorf("%w: %w", outbox.ErrUnreachable, err)
	}
	return err
}

// refused reports whether err is the broker's refusal of a whole batch,
// which it gives before appending any of it, whatever became of an earlier
// attempt: the batch is the same each time.
func refused(err error) bool {
	for _, target := range permanentErrors {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// batchWide reports whether the broker refuses a whole record batch with err
// for what one record of it may be alone: too large, or an invalid record
// (a record without a key on a compacted topic, say).
func batchWide(err error) bool {
	return errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) || errors.Is(err, kerr.InvalidRecord)
}

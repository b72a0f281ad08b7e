package kafka

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/IBM/sarama"

	"github.com/outboxkit/outbox"
)

// permanentErrors are answers that no retry changes: the message itself is
// wrong for the topic.
var permanentErrors = []error{
	sarama.ErrMessageSizeTooLarge,
	sarama.ErrMessageSetSizeTooLarge,
	sarama.ErrInvalidTopic,
	sarama.ErrInvalidRecord,
}

// unreachableErrors mean the cluster could not take the message at all: no
// broker answered, or the partition had no leader or not enough replicas.
// The relay does not count an attempt for them.
var unreachableErrors = []error{
	sarama.ErrOutOfBrokers,
	sarama.ErrNotConnected,
	sarama.ErrBrokerNotAvailable,
	sarama.ErrLeaderNotAvailable,
	sarama.ErrNotLeaderForPartition,
	sarama.ErrRequestTimedOut,
	sarama.ErrNetworkException,
	sarama.ErrNotEnoughReplicas,
	sarama.ErrNotEnoughReplicasAfterAppend,
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
	for _, target := range permanentErrors {
		if errors.Is(err, target) {
			return fmt.Errorf("%w: %w", outbox.ErrPermanent, err)
		}
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

// Package broker holds the publisher contract between the relay and a message
// broker, and an adapter for any Watermill message.Publisher. The Kafka
// adapter, with bulk produce and a safe producer configuration, is in
// broker/kafka.
package broker

import (
	"context"

	"github.com/outboxkit/outbox"
)

// Publisher publishes batches of outbox messages. The relay calls Publish from
// one goroutine at a time per relay; implementations used by several relays
// must be safe for concurrent use.
//
// Publish returns nil when the broker accepted every message, else one error
// per message (nil for the accepted ones). It must keep per-key order: messages
// with the same topic and key reach the broker in slice order, and once one of
// them fails no later one is appended before it; the later ones get an error
// wrapping [outbox.ErrSkipped], or [outbox.ErrUnknownOutcome] when they may
// have been appended after it. Errors are classified by wrapping
// [outbox.ErrPermanent] (the broker will never accept the message) or
// [outbox.ErrUnreachable] (the broker could not be reached); anything else is
// transient. A failed message that the broker may have appended all the same
// also wraps [outbox.ErrUnknownOutcome]: the relay counts it as a possible
// duplicate. Publish returns when every message has an outcome or ctx is done.
//
// A publisher that records what it published, and can look it up, keeps a
// message with [outbox.Message.Reclaimed] set from being published twice:
// it returns nil for one it finds already published, without publishing it
// again, and [outbox.ErrInDoubt] for one it could not look up (the relay then
// leaves the event in its claim and hands it back once the claim's lease
// ends).
// broker/kafka does so in transactional mode; other publishers ignore the
// flag.
type Publisher interface {
	Publish(ctx context.Context, msgs []*outbox.Message) []error
}

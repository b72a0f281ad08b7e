package main

import (
	"fmt"
	"io"
	"slices"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outbox"
)

// checker compares what the consumer received with what the service
// committed and rolled back: every committed event, each payment's events in
// the order they were written, none rolled back.
type checker struct {
	committed  map[string][]string // payment ID -> event IDs in write order
	rolledBack map[string]bool
	received   map[string][]string // payment ID -> event IDs as they arrived
	seen       map[string]bool
	leaked     int
}

func newChecker(committed map[string][]string, rolledBack map[string]bool) *checker {
	return &checker{committed: committed, rolledBack: rolledBack, received: map[string][]string{}, seen: map[string]bool{}}
}

// Receive records msg if it belongs to this run; a redelivered message is
// recorded once, as a consumer that dedupes on the message UUID does.
func (c *checker) Receive(out io.Writer, msg *message.Message, run string) {
	env, err := outbox.DecodeEnvelope[PaymentChanged](msg.Payload)
	if err != nil || env.Metadata["run"] != run || c.seen[msg.UUID] {
		return // an event of an earlier run, or a duplicate
	}
	c.seen[msg.UUID] = true
	if c.rolledBack[msg.UUID] {
		c.leaked++
	}
	fmt.Fprintf(out, "  consumed %s %s (key %s)\n", env.Data.PaymentID, env.Data.Status, msg.Metadata.Get("partition_key"))
	c.received[env.Data.PaymentID] = append(c.received[env.Data.PaymentID], msg.UUID)
}

// Missing returns the number of committed events not received yet.
func (c *checker) Missing() int {
	n := 0
	for _, ids := range c.committed {
		for _, id := range ids {
			if !c.seen[id] {
				n++
			}
		}
	}
	return n
}

// Done reports whether every committed event arrived.
func (c *checker) Done() bool { return c.Missing() == 0 }

// outOfOrder returns the payments whose events arrived in another order
// than they were written.
func (c *checker) outOfOrder() []string {
	var bad []string
	for payment, ids := range c.committed {
		if !slices.Equal(ids, c.received[payment]) {
			bad = append(bad, payment)
		}
	}
	return bad
}

// Summary sums up the run.
func (c *checker) Summary() string {
	events := 0
	for _, ids := range c.committed {
		events += len(ids)
	}
	return fmt.Sprintf("published %d events of %d payments, in order: %d payments out of order, %d rolled-back events seen",
		events, len(c.committed), len(c.outOfOrder()), c.leaked)
}

// Err returns an error if a promise was broken.
func (c *checker) Err() error {
	if bad := c.outOfOrder(); len(bad) > 0 || c.leaked > 0 {
		return fmt.Errorf("%d payments out of order %v, %d rolled-back events published", len(bad), bad, c.leaked)
	}
	return nil
}

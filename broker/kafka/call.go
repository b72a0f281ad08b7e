package kafka

import (
	"context"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outboxkit/outbox"
)

// call is one Publish call: its messages, their outcomes so far, and the
// keys that failed.
type call struct {
	p      *Publisher
	msgs   []*outbox.Message
	errs   []error
	failed map[topicKey]failure // the first failure of each key that failed
	// alone holds the messages to send again each alone in its batch,
	// with their partition: a batch of several was refused as a whole
	// (too large, say), so which of them the broker refuses is not known.
	alone map[int]int32

	// txn is set when the call runs in a transaction: a failure whose
	// outcome is unknown then sets uncertain instead of wrapping
	// outbox.ErrUnknownOutcome, since the transaction decides.
	txn       bool
	uncertain bool
	// abandoned is set when records a request carried were given up:
	// the client's sequence numbers for them are lost.
	abandoned bool
}

func newCall(p *Publisher, msgs []*outbox.Message, errs []error) *call {
	return &call{p: p, msgs: msgs, errs: errs, failed: map[topicKey]failure{}, alone: map[int]int32{}}
}

type topicKey struct{ topic, key string }

// failure is the first failed message of a key.
type failure struct {
	index int
	err   error
}

func (c *call) key(i int) (topicKey, bool) {
	m := c.msgs[i]
	return topicKey{m.Topic, m.Key}, m.Key != ""
}

// run publishes the call's messages in rounds until each has an outcome or
// ctx ends. A round goes again over what an earlier one left open: records
// aborted before they were sent, and the records of a batch the broker
// refused as a whole, one per partition at a time.
func (c *call) run(ctx context.Context) {
	todo := make([]int, len(c.msgs))
	for i := range todo {
		todo[i] = i
	}
	for {
		todo = c.skip(todo)
		if len(todo) == 0 {
			return
		}
		if err := ctx.Err(); err != nil {
			for _, i := range todo {
				c.fail(i, classify(fmt.Errorf("produce: %w", err)), false)
			}
			return
		}
		pick := c.pick(todo)
		recs := make([]*kgo.Record, len(pick))
		for j, i := range pick {
			recs[j] = newRecord(c.msgs[i])
		}
		r := newRound(recs)
		out := c.p.run(ctx, r)
		c.abandoned = c.abandoned || r.abandoned
		settled := c.settle(pick, r, out)
		todo = slices.DeleteFunc(todo, func(i int) bool { return settled[i] })
	}
}

// skip gives ErrSkipped to the messages after a failed one of their key,
// and returns the others.
func (c *call) skip(todo []int) []int {
	return slices.DeleteFunc(todo, func(i int) bool {
		k, keyed := c.key(i)
		if f, ok := c.failed[k]; keyed && ok && f.index < i {
			c.errs[i] = skipped(f.err)
			return true
		}
		return false
	})
}

// pick chooses the messages of the next round: while some must go alone,
// the first of them in each partition; else the first maxRound messages.
func (c *call) pick(todo []int) []int {
	if len(c.alone) == 0 {
		return todo[:min(len(todo), maxRound)]
	}
	var pick []int
	taken := map[int32]bool{}
	for _, i := range todo {
		if part, ok := c.alone[i]; ok && !taken[part] {
			taken[part] = true
			pick = append(pick, i)
		}
	}
	return pick
}

// settle records the outcomes of a round over the messages pick, and
// returns the messages that have their outcome.
func (c *call) settle(pick []int, r *round, out outcome) map[int]bool {
	settled := make(map[int]bool, len(pick))
	// Records refused with a batch-wide error per partition: when several
	// share it, each goes again alone to find the one the broker refuses.
	shared := map[int32]int{}
	for j, err := range r.errs {
		if err != nil && !r.early[j].Load() && batchWide(err) {
			shared[r.recs[j].Partition]++
		}
	}
	for j, i := range pick {
		err, early := r.errs[j], r.early[j].Load()
		switch {
		case out == aborted && !early:
			continue // never sent: in the next round
		case err == nil:
			c.errs[i] = nil
		case !early && batchWide(err) && shared[r.recs[j].Partition] > 1:
			c.alone[i] = r.recs[j].Partition
			continue
		default:
			// A record that failed after the round was flushed may have
			// been appended, unless no produce request went out or the
			// broker's answer refused its batch.
			unknown := !early && r.written.Load() && !refused(err)
			c.fail(i, classify(fmt.Errorf("produce: %w", err)), unknown)
		}
		delete(c.alone, i)
		settled[i] = true
	}
	return settled
}

// fail records err as the outcome of message i. A message whose outcome is
// unknown says so even after an earlier failure of its key: it may be on
// the topic. A message after a failed one of its key is otherwise skipped:
// nothing after the failed one was appended.
func (c *call) fail(i int, err error, unknown bool) {
	k, keyed := c.key(i)
	f, failed := c.failed[k]
	switch {
	case unknown && c.txn:
		c.uncertain = true
	case unknown:
		err = fmt.Errorf("%w: %w", outbox.ErrUnknownOutcome, err)
	case keyed && failed && f.index < i:
		err = skipped(f.err)
	}
	c.errs[i] = err
	if keyed && (!failed || i < f.index) {
		c.failed[k] = failure{i, err}
	}
}

// skipped is the error of a message not sent, or not appended, after an
// earlier message of its key failed with cause. It never matches
// outbox.ErrPermanent or outbox.ErrUnknownOutcome: the message itself may
// be fine, and it is not on the topic.
func skipped(cause error) error {
	return fmt.Errorf("%w: %v", outbox.ErrSkipped, cause)
}

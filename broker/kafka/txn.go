package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outboxkit/outbox"
)

// publishTxn publishes msgs in transactional mode (docs/transactions.md):
// the reclaimed ones are looked up in the progress topic first, and the
// others go out in one transaction with a progress record that names them.
func (p *Publisher) publishTxn(ctx context.Context, msgs []*outbox.Message, errs []error) {
	all := indices(len(msgs))
	if err := p.prepare(ctx); err != nil {
		p.failAll(msgs, errs, all, classify(fmt.Errorf("transaction: %w", err)), true)
		return
	}
	todo := p.lookUp(ctx, msgs, errs)
	if len(todo) > 0 {
		p.transact(ctx, msgs, errs, todo)
	}
}

// prepare gets a client ready for a transaction: a new one when the last
// was fenced or may have left a transaction open, the progress topic
// checked, and a producer ID. Loading the producer ID fences an earlier
// producer with the same transactional ID: the coordinator aborts its open
// transaction, or finishes the commit it had begun, first.
func (p *Publisher) prepare(ctx context.Context) error {
	if p.renew {
		cl, err := p.newClient()
		if err != nil {
			return err
		}
		p.clMu.Lock()
		old := p.cl
		p.cl = cl
		p.clMu.Unlock()
		old.Close()
		p.renew = false
	}
	if !p.progressReady {
		if err := p.ensureProgressTopic(ctx); err != nil {
			return err
		}
		p.progressReady = true
	}
	if _, _, err := p.cl.ProducerID(ctx); err != nil {
		var ke *kerr.Error
		if errors.As(err, &ke) && !ke.Retriable {
			p.renew = true // fenced or refused: only a new client gets a new producer ID
		}
		return fmt.Errorf("producer ID: %w", err)
	}
	return nil
}

// lookUp looks the reclaimed messages up in the progress topic, within half
// of the time left. A message that a committed transaction carried is
// published: its error stays nil and it is not produced again. When the
// look-up fails, the reclaimed messages are in doubt and the later messages
// of their keys are skipped. It returns the messages still to publish.
func (p *Publisher) lookUp(ctx context.Context, msgs []*outbox.Message, errs []error) []int {
	ids := map[uuid.UUID]bool{}
	var since time.Time // the creation of the oldest
	for _, m := range msgs {
		if m.Reclaimed {
			ids[m.ID] = true
			if since.IsZero() || m.CreatedAt.Before(since) {
				since = m.CreatedAt
			}
		}
	}
	var found map[uuid.UUID]bool
	var err error
	if len(ids) > 0 {
		lctx, cancel := context.WithTimeout(ctx, remaining(ctx)/2)
		found, err = p.published(lctx, ids, max(0, since.Add(-clockSkew).UnixMilli()))
		cancel()
	}
	var todo []int
	doubt := map[topicKey]error{}
	for i, m := range msgs {
		k := topicKey{m.Topic, m.Key}
		switch {
		case m.Reclaimed && err != nil:
			errs[i] = inDoubt(classify(err))
			if m.Key != "" {
				doubt[k] = errs[i]
			}
		case m.Reclaimed && found[m.ID]:
			// An earlier transaction published it.
		case m.Key != "" && doubt[k] != nil:
			errs[i] = skipped(doubt[k])
		default:
			todo = append(todo, i)
		}
	}
	return todo
}

// remaining is the time left until ctx's deadline.
func remaining(ctx context.Context) time.Duration {
	deadline, _ := ctx.Deadline() // Publish always sets one
	return time.Until(deadline)
}

// transact publishes msgs[todo] in one transaction. The messages the call
// appended are committed together with a progress record that names them;
// the failed ones were not appended (a failure whose outcome is unknown
// aborts the whole transaction instead). When the commit is not confirmed,
// the progress record tells whether it happened.
func (p *Publisher) transact(ctx context.Context, msgs []*outbox.Message, errs []error, todo []int) {
	sub := make([]*outbox.Message, len(todo))
	for j, i := range todo {
		sub[j] = msgs[i]
	}
	subErrs := make([]error, len(sub))
	defer func() {
		for j, i := range todo {
			errs[i] = subErrs[j]
		}
	}()
	if err := p.cl.BeginTransaction(); err != nil {
		p.renew = true
		p.failAll(sub, subErrs, indices(len(sub)), classify(fmt.Errorf("begin transaction: %w", err)), false)
		return
	}
	c := newCall(p, sub, subErrs)
	c.txn = true
	c.run(ctx)

	var ids []uuid.UUID
	var firstErr error
	for j, err := range subErrs {
		if err == nil {
			ids = append(ids, sub[j].ID)
		} else if firstErr == nil {
			firstErr = err
		}
	}
	// Why the transaction must abort, if it must: the messages the call
	// appended then go back with it.
	var abort error
	var off int64
	switch {
	case c.abandoned:
		// Records a request carried were given up: the client cannot end
		// the transaction. A new client's producer ID aborts it.
		p.renew = true
		p.takeBack(sub, subErrs, skipped(firstErr))
		return
	case c.uncertain:
		abort = skipped(firstErr)
	case len(ids) == 0:
		abort = skipped(firstErr)
	default:
		var err error
		if off, err = p.appendProgress(ctx, ids); err != nil {
			abort = classify(fmt.Errorf("transaction: %w", err))
		} else if err := ctx.Err(); err != nil {
			// The relay's lease is ending: a commit now could publish
			// what another relay takes over.
			abort = classify(fmt.Errorf("transaction: %w", err))
		}
	}
	if abort != nil {
		p.abort(ctx)
		p.takeBack(sub, subErrs, abort)
		return
	}
	// A commit that gets no answer leaves a third of the time to find out
	// what became of it.
	cctx, cancel := context.WithTimeout(ctx, remaining(ctx)*2/3)
	err := p.cl.EndTransaction(cctx, kgo.TryCommit)
	cancel()
	if err == nil {
		return
	}
	commitErr := classify(fmt.Errorf("commit: %w", err))
	committed, rerr := p.resolve(ctx, off)
	switch {
	case rerr != nil:
		for j := range sub {
			if subErrs[j] == nil {
				subErrs[j] = inDoubt(commitErr)
			}
		}
	case !committed:
		p.takeBack(sub, subErrs, commitErr)
	}
}

func indices(n int) []int {
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	return all
}

// abort aborts the open transaction. When it cannot, the next call starts
// with a new client, whose producer ID aborts it.
func (p *Publisher) abort(ctx context.Context) {
	if p.renew || ctx.Err() != nil {
		p.renew = true
		return
	}
	if err := p.cl.EndTransaction(ctx, kgo.TryAbort); err != nil {
		p.renew = true
	}
}

// resolve finds out whether the transaction whose commit was not confirmed
// committed. Ending it again with an abort reloads the producer ID, which
// bumps its epoch: the coordinator finishes a commit it had begun and
// aborts the transaction otherwise. Then the progress record at off tells.
func (p *Publisher) resolve(ctx context.Context, off int64) (bool, error) {
	if err := p.cl.EndTransaction(ctx, kgo.TryAbort); err != nil {
		// The coordinator ends the transaction by itself in the end; the
		// read below waits for it.
		p.renew = true
	}
	return p.committedAt(ctx, off)
}

// takeBack gives the messages that the call appended in a transaction that
// did not commit the error why: they are not on the topic for a
// read_committed consumer. The failed ones keep their own errors.
func (p *Publisher) takeBack(msgs []*outbox.Message, errs []error, why error) {
	for j := range msgs {
		if errs[j] == nil {
			errs[j] = why
		}
	}
}

// failAll fails msgs[idx], none of which was sent, with err: the first of
// each key, and the later ones as skipped. When the reclaimed messages were
// not looked up (notLookedUp), they are in doubt instead.
func (p *Publisher) failAll(msgs []*outbox.Message, errs []error, idx []int, err error, notLookedUp bool) {
	failed := map[topicKey]bool{}
	for _, i := range idx {
		m := msgs[i]
		k := topicKey{m.Topic, m.Key}
		switch {
		case m.Reclaimed && notLookedUp:
			errs[i] = inDoubt(err)
		case m.Key != "" && failed[k]:
			errs[i] = skipped(err)
		default:
			errs[i] = err
		}
		failed[k] = true
	}
}

// inDoubt is the error of a message that may have been published and could
// not be looked up.
func inDoubt(cause error) error {
	return fmt.Errorf("%w: %w", outbox.ErrInDoubt, cause)
}

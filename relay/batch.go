package relay

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/internal/wire"
	"github.com/outboxkit/outbox/store"
)

// outcome is what became of the messages of one topic in one batch.
type outcome struct {
	published []uuid.UUID
	lags      []time.Duration
	failures  []store.Failure
	released  []uuid.UUID // put back at once (skipped, shutdown)
	delayed   []uuid.UUID // put back after the breaker's delay
	// kept are left leased: their publish is in doubt, or they are
	// reclaimed and were not handed to the publisher. Once the lease ends
	// the next claim takes them again, as reclaimed.
	kept   int
	parked int
	dups   int
}

// add merges p into o.
func (o *outcome) add(p outcome) {
	o.published = append(o.published, p.published...)
	o.lags = append(o.lags, p.lags...)
	o.failures = append(o.failures, p.failures...)
	o.released = append(o.released, p.released...)
	o.delayed = append(o.delayed, p.delayed...)
	o.kept += p.kept
	o.parked += p.parked
	o.dups += p.dups
}

// settlement is the outcome of one topic of a batch, to be recorded in the
// store.
type settlement struct {
	token uuid.UUID
	topic string
	size  int
	o     outcome
	pause time.Duration
}

// publishBatch publishes a claimed batch round after round (see rounds),
// each round topic by topic. A key's message goes out only if its earlier
// messages in the batch did: once one did not (it failed, was parked or was
// put back), the later ones are released without counting an attempt. It
// returns the outcomes to settle, one per topic, and the circuit breaker's
// pause when the broker was unreachable.
//
// Publishing ends three quarters of the lease after leaseFrom, a moment
// before the claim was sent, whatever the number of topics: a publisher
// must not publish what another relay may already have reclaimed, also when
// the claim's answer was slow.
func (r *Relay) publishBatch(ctx, work context.Context, claim store.Claim, leaseFrom, claimedAt time.Time) ([]settlement, time.Duration) {
	deadline := leaseFrom.Add(r.cfg.Lease * 3 / 4)
	var pause time.Duration
	var settlements []settlement
	index := map[string]int{} // of each topic's settlement
	held := map[string]bool{} // keys with a message that did not go out
	for _, round := range rounds(r.messages(claim.Records)) {
		for _, g := range round {
			var o outcome
			o, pause = r.publishTopic(work, deadline, g.topic, g.msgs, held, pause)
			o.lags = o.lagsFrom(g.msgs, claim.Now, claimedAt)
			holdUnpublished(held, g.msgs, o.published)
			i, ok := index[g.topic]
			if !ok {
				i = len(settlements)
				index[g.topic] = i
				settlements = append(settlements, settlement{token: claim.Token, topic: g.topic})
			}
			settlements[i].size += len(g.msgs)
			settlements[i].o.add(o)
			settlements[i].pause = pause
		}
	}
	if pause > 0 {
		r.outage.count(settlements)
	}
	return settlements, pause
}

// publishTopic publishes the messages of one topic in one round, except
// those of held keys, which it releases. It returns their outcome and the
// circuit breaker's pause, pause unless the broker just proved unreachable
// or reachable. A reclaimed message that is not handed to the publisher is
// kept rather than released: released, it would lose its Reclaimed mark
// before a publisher could look it up (see broker.Publisher).
func (r *Relay) publishTopic(work context.Context, deadline time.Time, topic string, msgs []*outbox.Message, held map[string]bool, pause time.Duration) (outcome, time.Duration) {
	var o outcome
	var send []*outbox.Message
	for _, m := range msgs {
		if m.Reclaimed {
			o.dups++
		}
		if m.Key != "" && held[m.Key] {
			o.putBack(m, &o.released)
		} else {
			send = append(send, m)
		}
	}
	r.duplicates.Add(int64(o.dups)) // before publishing: a crash must not lose the count
	switch {
	case len(send) == 0:
	case !outbox.ValidTopic(topic):
		for _, m := range send {
			o.failures = append(o.failures, store.Failure{ID: m.ID, Err: fmt.Sprintf("%v: invalid or missing topic %q", outbox.ErrPermanent, topic), Park: true})
		}
		o.parked = len(send)
	case work.Err() != nil || pause > 0:
		// The shutdown's grace period is over, or the broker just proved
		// unreachable: do not start another topic. A batch claimed before
		// shutdown began is still in flight and is finished.
		for _, m := range send {
			o.putBack(m, &o.delayed)
		}
	default:
		var unreachable error
		o, unreachable = r.publish(work, deadline, send, o)
		if unreachable != nil {
			pause = r.brokerDown(topic, len(send), unreachable)
		} else {
			r.brokerUp()
		}
	}
	return o, pause
}

// putBack puts m back without an attempt: into to, or, when it is
// reclaimed, by keeping it leased.
func (o *outcome) putBack(m *outbox.Message, to *[]uuid.UUID) {
	if m.Reclaimed {
		o.kept++
		return
	}
	*to = append(*to, m.ID)
}

// settleAll records the outcomes of a batch, topic by topic.
func (r *Relay) settleAll(ctx context.Context, settlements []settlement) {
	for _, s := range settlements {
		r.settle(ctx, s.token, s.topic, s.size, s.o, s.pause)
	}
}

// messages turns records into messages, in seq order.
func (r *Relay) messages(recs []store.Record) []*outbox.Message {
	msgs := make([]*outbox.Message, len(recs))
	for i := range recs {
		msgs[i] = wire.Message(&recs[i])
	}
	return msgs
}

// topicMessages are the messages of one topic in one round, in seq order.
type topicMessages struct {
	topic string
	msgs  []*outbox.Message
}

// rounds splits messages in seq order into rounds in which each key has a
// single topic: a message joins the round of its key's previous message if
// that went to the same topic, else the next round. Publishing round after
// round keeps a key's write order across topics; within a round the
// publisher keeps it per topic and key. Each round holds its messages by
// topic, in the order topics first appear.
func rounds(msgs []*outbox.Message) [][]topicMessages {
	type last struct {
		round int
		topic string
	}
	prev := map[string]last{}
	var out [][]topicMessages
	for _, m := range msgs {
		i := 0
		if m.Key != "" {
			if p, ok := prev[m.Key]; ok {
				i = p.round
				if p.topic != m.Topic {
					i++
				}
			}
			prev[m.Key] = last{i, m.Topic}
		}
		if i == len(out) {
			out = append(out, nil)
		}
		j := slices.IndexFunc(out[i], func(g topicMessages) bool { return g.topic == m.Topic })
		if j < 0 {
			j = len(out[i])
			out[i] = append(out[i], topicMessages{topic: m.Topic})
		}
		out[i][j].msgs = append(out[i][j].msgs, m)
	}
	return out
}

// holdUnpublished adds the keys of msgs that are not in published to held.
func holdUnpublished(held map[string]bool, msgs []*outbox.Message, published []uuid.UUID) {
	out := make(map[uuid.UUID]bool, len(published))
	for _, id := range published {
		out[id] = true
	}
	for _, m := range msgs {
		if m.Key != "" && !out[m.ID] {
			held[m.Key] = true
		}
	}
}

// publish sends the messages of one topic and classifies each outcome. When
// no message went out and at least one failed because the broker could not
// be reached, it returns that failure as unreachable.
func (r *Relay) publish(work context.Context, deadline time.Time, msgs []*outbox.Message, o outcome) (_ outcome, unreachable error) {
	out := msgs
	topic := out[0].Topic
	pubCtx, cancel := context.WithDeadline(work, deadline)
	defer cancel()
	if r.cfg.Tracer != nil {
		pubCtx = r.cfg.Tracer.TracePublishStart(pubCtx, outbox.TracePublishStartData{Topic: topic, Messages: out})
	}
	start := time.Now()
	errs := r.pub.Publish(pubCtx, out)
	took := time.Since(start)
	if errs != nil && len(errs) != len(msgs) {
		// A publisher that breaks the contract: any message may be on the
		// broker.
		err := fmt.Errorf("%w: publisher returned %d outcomes for %d messages", outbox.ErrUnknownOutcome, len(errs), len(msgs))
		r.cfg.Logger.Error("relay: "+err.Error(), "topic", topic)
		errs = make([]error, len(msgs))
		for i := range errs {
			errs[i] = err
		}
	}
	// Count the messages that may be on the broker although they failed
	// before the tracer hears of the publish and before any settle: a
	// crash right after must not lose the count.
	uncertain := 0
	for _, err := range errs {
		if errors.Is(err, outbox.ErrUnknownOutcome) {
			uncertain++
		}
	}
	o.dups += uncertain
	r.duplicates.Add(int64(uncertain))
	if r.cfg.Tracer != nil {
		r.cfg.Tracer.TracePublishEnd(pubCtx, outbox.TracePublishEndData{Topic: topic, Messages: out, Errs: errs, Duration: took})
	}
	// A publish that ran into the relay's own deadline met a broker that
	// does not answer (blackholed, or stalled): like an unreachable one, it
	// must not use up attempts.
	timedOut := errors.Is(pubCtx.Err(), context.DeadlineExceeded) && work.Err() == nil
	allUnreachable := errs != nil && (timedOut || r.onlyUnreachable(errs))
	for i, m := range msgs {
		var err error
		if errs != nil {
			err = errs[i]
		}
		switch {
		case err == nil:
			o.published = append(o.published, m.ID)
		case errors.Is(err, outbox.ErrInDoubt):
			o.kept++
		case errors.Is(err, outbox.ErrSkipped):
			o.released = append(o.released, m.ID)
		case allUnreachable:
			o.delayed = append(o.delayed, m.ID)
		case work.Err() != nil:
			// Shutdown cut the publish short.
			o.released = append(o.released, m.ID)
		case errors.Is(err, outbox.ErrUnreachable):
			// Part of the broker could not be reached (a partition
			// without its leader or replicas) while the rest took its
			// messages: an outage, so no attempt is counted.
			o.released = append(o.released, m.ID)
		case errors.Is(err, outbox.ErrPermanent):
			o.failures = append(o.failures, store.Failure{ID: m.ID, Err: err.Error(), Park: true})
			o.parked++
		default:
			attempts := m.Attempts + 1
			if attempts >= r.cfg.MaxRetries {
				o.failures = append(o.failures, store.Failure{ID: m.ID, Err: err.Error(), Park: true})
				o.parked++
			} else {
				o.failures = append(o.failures, store.Failure{ID: m.ID, Err: err.Error(), Delay: backoff(r.cfg.ErrorRetryInterval, r.cfg.MaxBackoff, attempts)})
			}
		}
	}
	if allUnreachable {
		for _, err := range errs {
			if err != nil && !errors.Is(err, outbox.ErrSkipped) {
				return o, err
			}
		}
		return o, pubCtx.Err()
	}
	r.cfg.Logger.Debug("relay: published", "topic", topic, "count", len(o.published), "failed", len(o.failures), "duration", took)
	return o, nil
}

// onlyUnreachable reports whether no message went out and every failure is
// unreachable or skipped: the broker could not be reached at all.
func (r *Relay) onlyUnreachable(errs []error) bool {
	unreachable := false
	for _, err := range errs {
		switch {
		case err == nil:
			return false
		case errors.Is(err, outbox.ErrUnreachable):
			unreachable = true
		case !errors.Is(err, outbox.ErrSkipped):
			return false
		}
	}
	return unreachable
}

// lagsFrom returns commit→publish lags of the published messages: the age
// of each event at the claim by the database clock, plus the time since the
// claim by this process's monotonic clock.
func (o outcome) lagsFrom(msgs []*outbox.Message, dbNow time.Time, claimedAt time.Time) []time.Duration {
	if len(o.published) == 0 {
		return nil
	}
	since := time.Since(claimedAt)
	published := make(map[uuid.UUID]bool, len(o.published))
	for _, id := range o.published {
		published[id] = true
	}
	lags := make([]time.Duration, 0, len(o.published))
	for _, m := range msgs {
		if published[m.ID] {
			lags = append(lags, dbNow.Sub(m.CreatedAt)+since)
		}
	}
	return lags
}

// settle records an outcome in the store under a context that shutdown does
// not cancel: what the broker accepted must be marked.
func (r *Relay) settle(ctx context.Context, token uuid.UUID, topic string, size int, o outcome, pause time.Duration) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.SettleTimeout)
	defer cancel()
	log := r.cfg.Logger
	if len(o.published) > 0 {
		var n int
		err := retry(sctx, func() (err error) {
			if r.deleter != nil {
				n, err = r.deleter.DeletePublishedNow(sctx, token, o.published)
			} else {
				n, err = r.store.MarkPublished(sctx, token, o.published)
			}
			return err
		})
		switch {
		case err != nil:
			// The claim will end and the events be published again; the
			// next claimer counts them as possible duplicates.
			log.Error("relay: mark published", "topic", topic, "count", len(o.published), "err", err)
		case n < len(o.published):
			lost := len(o.published) - n
			o.dups += lost
			r.duplicates.Add(int64(lost))
			log.Warn("relay: claim taken over before mark; events may be published twice", "topic", topic, "count", lost)
		}
		r.published.Add(int64(len(o.published)))
	}
	if len(o.failures) > 0 {
		if err := retry(sctx, func() error { return r.store.Fail(sctx, token, o.failures) }); err != nil {
			log.Error("relay: record failures", "topic", topic, "count", len(o.failures), "err", err)
		}
		r.failed.Add(int64(len(o.failures) - o.parked))
		r.parked.Add(int64(o.parked))
		for _, f := range o.failures {
			if f.Park {
				log.Warn("relay: event parked", "topic", topic, "id", f.ID, "err", f.Err)
			}
		}
	}
	for _, rel := range []struct {
		ids   []uuid.UUID
		delay time.Duration
	}{{o.released, 0}, {o.delayed, pause}} {
		if len(rel.ids) == 0 {
			continue
		}
		if err := retry(sctx, func() error { return r.store.Release(sctx, token, rel.ids, rel.delay) }); err != nil {
			log.Error("relay: release", "topic", topic, "count", len(rel.ids), "err", err)
		}
		r.released.Add(int64(len(rel.ids)))
	}
	if o.kept > 0 {
		log.Warn("relay: events left leased until their lease ends (publish in doubt, or reclaimed and not sent)", "topic", topic, "count", o.kept)
	}
	if st, ok := r.cfg.Tracer.(outbox.SettleTracer); ok {
		st.TraceSettle(ctx, outbox.TraceSettleData{
			Topic: topic, BatchSize: size, Published: len(o.published), Failed: len(o.failures) - o.parked,
			Released: len(o.released) + len(o.delayed), Parked: o.parked, PossibleDuplicates: o.dups, Lags: o.lags,
		})
	}
}

// retry runs a settle step until it succeeds or ctx ends. Settle steps are
// fenced by the claim's token, so repeating one whose first run committed
// without an answer does no harm; giving up instead would leave the events to
// be published again once the claim's lease ends.
func retry(ctx context.Context, step func() error) error {
	wait := 10 * time.Millisecond
	for {
		err := step()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}

package kafka

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// round produces a set of records in one go: every record is buffered, and
// placed in its partition, before the first is sent. That is what keeps a
// key's order: the client fails every record buffered behind a failed one
// in its partition, so a record that is already buffered when an earlier
// one fails fails with it, and no record of a round can be buffered later.
//
// A record can also fail before anything is sent (too large by itself, a
// topic that fails to load). Then the round sends nothing: it aborts the
// records still buffered, and the call runs them again, without the later
// records of the keys that failed.
type round struct {
	recs  []*kgo.Record
	index map[*kgo.Record]int

	errs []error // set by the promises
	// early marks records that failed while the round was buffering,
	// before any of its records was sent.
	early     []atomic.Bool
	buffering atomic.Bool

	placed    []atomic.Bool
	nplaced   atomic.Int64
	allPlaced chan struct{}
	pending   atomic.Int64  // records without a result
	done      chan struct{} // closed when every record has its result

	// written is set once a produce request reached a broker while the
	// round ran: from then on a failed record may have been appended.
	written atomic.Bool
	// abandoned is set when the round gave up records that may have been
	// in flight.
	abandoned bool
}

// outcome says what became of the records of a round.
type outcome int

const (
	// sent: the round was flushed; errs holds each record's result.
	sent outcome = iota
	// aborted: a record failed before the flush (early marks which);
	// the others were never sent.
	aborted
)

func newRound(recs []*kgo.Record) *round {
	r := &round{
		recs:      recs,
		index:     make(map[*kgo.Record]int, len(recs)),
		errs:      make([]error, len(recs)),
		early:     make([]atomic.Bool, len(recs)),
		placed:    make([]atomic.Bool, len(recs)),
		allPlaced: make(chan struct{}),
		done:      make(chan struct{}),
	}
	for i, rec := range recs {
		r.index[rec] = i
	}
	r.buffering.Store(true)
	return r
}

// place notes that record i is in its partition's buffer, or failed.
func (r *round) place(i int) {
	if r.placed[i].CompareAndSwap(false, true) && r.nplaced.Add(1) == int64(len(r.recs)) {
		close(r.allPlaced)
	}
}

func (r *round) promise(rec *kgo.Record, err error) {
	i := r.index[rec]
	r.errs[i] = err
	r.early[i].Store(err != nil && r.buffering.Load())
	r.place(i)
	if r.pending.Add(-1) == 0 {
		close(r.done)
	}
}

// run produces the round's records under ctx, which bounds the round. It
// returns once every record has its result.
func (p *Publisher) run(ctx context.Context, r *round) outcome {
	p.cur.Store(r)
	defer p.cur.Store(nil)
	r.pending.Store(int64(len(r.recs)))
	for _, rec := range r.recs {
		p.cl.Produce(ctx, rec, r.promise)
	}
	// The records of a topic new to the client wait for its metadata. The
	// client's metadata goroutine places them, and stores the topic's
	// partitions only after that: a flush that starts in between does not
	// see those partitions, and with manual flushing nothing else sends
	// their records. Such a round nudges the client while it flushes.
	late := r.nplaced.Load() < int64(len(r.recs))

	// A record waits in the client until its topic's partitions are
	// known; by ctx's end at the latest, it is placed or failed.
	p.waitPlaced(ctx, r)

	// Promises come one at a time, in the order the client settles them:
	// once a record that fails before it is buffered has its promise
	// called, every failure that happened before it has been reported.
	barrier := make(chan struct{})
	p.cl.Produce(ctx, &kgo.Record{}, func(*kgo.Record, error) { close(barrier) }) // no topic: fails at once
	<-barrier

	r.buffering.Store(false)
	for i := range r.recs {
		if r.early[i].Load() {
			// Nothing was sent: failing what is buffered is safe.
			p.abortBuffered(r.done)
			return aborted
		}
	}
	fctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(abortGrace, cancel) })
	defer stop()
	if late {
		defer p.nudge(fctx)()
	}
	if err := p.cl.Flush(fctx); err != nil {
		// The client did not fail the records that were left when ctx
		// ended. Abandon them: the client moves to a new producer epoch
		// before it sends again, so none of them can be appended after a
		// later record of its partition.
		p.abortBuffered(r.done)
		r.abandoned = true
	}
	<-r.done
	return sent
}

// nudgeInterval is how often a flush of records that waited for their
// topic's metadata is started again.
const nudgeInterval = 20 * time.Millisecond

// nudge starts a flush with a context already done, every nudgeInterval
// until the returned function is called or ctx ends: each one makes every
// partition the client knows by then send what it holds, and returns at
// once.
func (p *Publisher) nudge(ctx context.Context) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(nudgeInterval)
		defer t.Stop()
		now, cancel := context.WithCancel(ctx)
		cancel()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				_ = p.cl.Flush(now)
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// waitPlaced waits until every record of r is placed or failed. The client
// fails a record waiting for its topic when ctx ends; should it not, the
// records are abandoned shortly after.
func (p *Publisher) waitPlaced(ctx context.Context, r *round) {
	select {
	case <-r.allPlaced:
		return
	case <-ctx.Done():
	}
	select {
	case <-r.allPlaced:
	case <-time.After(abortGrace):
		p.abortBuffered(r.allPlaced)
	}
}

// abortRetry is how long abortBuffered waits before it aborts again.
const abortRetry = 100 * time.Millisecond

// abortBuffered fails the records the client buffers until done is closed.
// One abort is not always enough: on a topic's first metadata load, the
// client places the records waiting for the topic in partitions it makes
// visible, to an abort too, only afterwards, so an abort in between misses
// them. The next abort finds them.
func (p *Publisher) abortBuffered(done <-chan struct{}) {
	for {
		p.cl.UnsafeAbortBufferedRecords()
		select {
		case <-done:
			return
		case <-time.After(abortRetry):
		}
	}
}

// hooks tells the round in progress what the client does with its records.
type hooks struct{ p *Publisher }

var (
	_ kgo.HookProduceRecordPartitioned = hooks{}
	_ kgo.HookBrokerWrite              = hooks{}
)

// OnProduceRecordPartitioned implements kgo.HookProduceRecordPartitioned.
func (h hooks) OnProduceRecordPartitioned(rec *kgo.Record, _ int32) {
	if r := h.p.cur.Load(); r != nil {
		if i, ok := r.index[rec]; ok {
			r.place(i)
		}
	}
}

// produceKey is the API key of produce requests.
const produceKey = 0

// OnBrokerWrite implements kgo.HookBrokerWrite.
func (h hooks) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, bytesWritten int, _, _ time.Duration, _ error) {
	if key != produceKey || bytesWritten == 0 {
		return
	}
	if r := h.p.cur.Load(); r != nil {
		r.written.Store(true)
	}
}

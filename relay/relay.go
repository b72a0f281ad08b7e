// Package relay publishes committed outbox events to a broker.
//
// A [Relay] repeats one cycle: claim a batch of pending events from a
// [store.Store] (in seq order, never past an earlier held event of the same
// key), publish them through a [broker.Publisher], and record the outcome in
// the store: published rows are marked (or deleted, see
// Config.Retention) with one statement fenced by the claim's token; failures are retried with exponential backoff and
// jitter, and parked after Config.MaxRetries attempts or at once when
// permanent; events the broker could not be reached for are released without
// counting an attempt, and when that was the whole batch the relay backs off
// (a circuit breaker). No database transaction is held open across broker I/O.
//
// Guarantees: an event is published at least once if and only if its
// transaction committed; events of one key are published in the order they
// were written, whatever their topic, with any number of relays; duplicates
// arise only from an uncertain step (a crash between publish and mark, a claim
// taken over after its lease, a publish whose outcome is unknown) and are counted in
// Stats.PossibleDuplicates. Consumers dedupe on the event ID.
//
// A parked event blocks the later events of its key, on every topic, to keep
// their order, until an operator retries or skips it (see cmd/outbox parked); other keys
// are not affected.
//
// An event whose publish is in doubt (outbox.ErrInDoubt), or a reclaimed
// event that the relay did not hand to the publisher, stays in its claim until
// the claim's lease ends: released, it would lose the mark that makes a publisher look
// it up before publishing it again (see broker.Publisher).
//
// Run stops in stages when its context is done: it stops claiming, finishes
// publishing the batch in flight within Config.ShutdownTimeout, records the
// outcome, releases what it did not publish (but the events it keeps in
// their claim), and returns.
package relay

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outboxkit/outbox/broker"
	"github.com/outboxkit/outbox/store"
)

// ErrRunning is returned by Run when the relay is already running.
var ErrRunning = errors.New("relay: already running")

// Relay moves committed events from a store to a broker.
type Relay struct {
	store store.Store
	// deleter deletes published events when Retention is DeleteOnPublish;
	// nil otherwise.
	deleter store.Deleter
	pub     broker.Publisher
	cfg     Config
	running atomic.Bool
	// outage is the broker outage in progress; only the Run goroutine
	// touches it.
	outage outage

	published, failed, released, parked, duplicates atomic.Int64
}

// Stats counts what a relay did since it was created.
type Stats struct {
	Published int64
	// Failed counts failed attempts scheduled for a retry.
	Failed int64
	// Released counts events put back without counting an attempt.
	Released int64
	Parked   int64
	// PossibleDuplicates counts events that may reach the broker more than
	// once because of an uncertain step: re-claimed after an earlier claim
	// never settled (its relay crashed or stalled past the lease), published
	// after another relay took this relay's claim over, or failed with an error that
	// wraps outbox.ErrUnknownOutcome (the broker may have appended them),
	// so that they will be published again. Duplicates on the broker never
	// exceed the sum of this counter over all relays. A publish's unknown
	// outcomes are counted before the tracer's TracePublishEnd runs.
	PossibleDuplicates int64
}

// New returns a relay that claims from st and publishes to pub. The caller
// keeps ownership of both.
func New(st store.Store, pub broker.Publisher, cfg Config) (*Relay, error) {
	if st == nil || pub == nil {
		return nil, errors.New("relay: store and publisher are required")
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &Relay{store: st, pub: pub, cfg: cfg}
	if cfg.Retention == DeleteOnPublish {
		d, ok := st.(store.Deleter)
		if !ok {
			return nil, fmt.Errorf("relay: Config.Retention is DeleteOnPublish but the store (%T) cannot delete published events", st)
		}
		r.deleter = d
	}
	return r, nil
}

// Stats returns the relay's counters.
func (r *Relay) Stats() Stats {
	return Stats{
		Published:          r.published.Load(),
		Failed:             r.failed.Load(),
		Released:           r.released.Load(),
		Parked:             r.parked.Load(),
		PossibleDuplicates: r.duplicates.Load(),
	}
}

// Run relays until ctx is done, then shuts down as the package doc describes
// and returns nil. It returns an error only if the relay cannot run at all.
// Store and broker errors are logged and retried, never returned.
func (r *Relay) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer r.running.Store(false)

	// work outlives ctx by ShutdownTimeout so that the batch in flight can
	// finish publishing.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	var grace *time.Timer
	var graceMu sync.Mutex
	stop := context.AfterFunc(ctx, func() {
		graceMu.Lock()
		grace = time.AfterFunc(r.cfg.ShutdownTimeout, cancelWork)
		graceMu.Unlock()
	})
	defer func() {
		stop()
		graceMu.Lock()
		if grace != nil {
			grace.Stop()
		}
		graceMu.Unlock()
	}()

	var wg sync.WaitGroup
	if r.cfg.Retention > 0 {
		wg.Go(func() { r.janitor(ctx) })
	}
	var wake <-chan struct{}
	if w, ok := r.store.(store.Waker); ok {
		ch, unsubscribe := w.Subscribe()
		defer unsubscribe()
		wake = ch
	}
	r.cfg.Logger.Info("relay started", "owner", r.cfg.Owner, "batch", r.cfg.BatchSize)
	r.loop(ctx, work, wake)
	wg.Wait()
	r.cfg.Logger.Info("relay stopped", "owner", r.cfg.Owner)
	return nil
}

// Fast polls after a wake-up: the writer's transaction may commit a moment
// after AddTx returned, so an empty claim right after a wake-up is retried
// after 1ms, 2ms, 4ms, ... until PollInterval. The same holds after a batch:
// where events just arrived, more are likely on their way, and a relay that
// cannot be woken (another process, no NOTIFY) finds them within a few
// milliseconds instead of a whole PollInterval; once idle it is back to
// PollInterval within about 2·64ms.
const firstFastPoll = time.Millisecond

func (r *Relay) loop(ctx, work context.Context, wake <-chan struct{}) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var storeErrors int
	var fast time.Duration
	var bg background
	defer bg.wait()
	for ctx.Err() == nil {
		n, pause, err := r.cycle(ctx, work, &bg)
		var wait time.Duration
		switch {
		case err != nil:
			storeErrors++
			wait = backoff(r.cfg.ErrorRetryInterval, maxPause, storeErrors)
			if ctx.Err() == nil {
				r.cfg.Logger.Error("relay: store error", "err", err, "retry_in", wait)
			}
		case pause > 0:
			storeErrors = 0
			wait = pause
		case n > 0:
			storeErrors, fast = 0, firstFastPoll
			continue
		case fast > 0 && fast < r.cfg.PollInterval:
			storeErrors = 0
			wait, fast = fast, fast*2
		default:
			storeErrors, fast = 0, 0
			wait = r.cfg.PollInterval
		}
		// A wake-up cuts a poll short, never an open breaker or the backoff
		// after a store error.
		interruptible := err == nil && pause == 0
		timer.Reset(wait)
		for waiting := true; waiting; {
			select {
			case <-ctx.Done():
				waiting = false
			case <-timer.C:
				waiting = false
			case <-wake:
				if interruptible {
					fast, waiting = firstFastPoll, false
				}
			}
		}
	}
}

// maxPause caps the circuit breaker's pause and the backoff after store
// errors: events released by the breaker become claimable again after the
// pause, so it bounds how long publishing lags once the broker is back.
const maxPause = 10 * time.Second

// background is the settle of the previous batch, which runs while the next
// batch is claimed and published: marking and claiming are the costly
// statements, and overlapping them is most of a drain's speed. It cannot
// break per-key order: until its settle commits, the previous batch's claim
// holds its events' keys, as it does against another relay.
type background struct {
	done chan struct{} // closed when the settle is over; nil when none runs
	// size is the previous batch's size; serial counts batches still to be
	// claimed without overlap (see cycle).
	size, serial int
}

func (b *background) running() bool { return b.done != nil }

func (b *background) wait() {
	if b.done != nil {
		<-b.done
		b.done = nil
	}
}

// serialBatches is how many batches are claimed after their predecessor
// settled, once an overlapping claim found little to take.
const serialBatches = 16

// cycle claims, publishes and settles one batch. Unless shutting down or the
// broker is unreachable, the settle runs in the background while the next
// cycle claims and publishes. It returns the number of events claimed and how
// long to pause when the broker was unreachable.
func (r *Relay) cycle(ctx, work context.Context, bg *background) (int, time.Duration, error) {
	if ctx.Err() != nil {
		bg.wait() // no new claim once shutdown began
		return 0, 0, nil
	}
	overlapped := bg.running()
	// The claim runs under a context that shutdown does not cancel: one
	// that committed on the server while its answer was cut off would leave
	// its events leased, and their keys held, for a whole lease. Once it
	// returns, the batch is in flight and is finished or released.
	claimCtx, cancelClaim := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.SettleTimeout)
	// The lease starts after this, however long the claim's answer takes.
	leaseFrom := time.Now()
	claim, err := r.store.Claim(claimCtx, store.ClaimParams{Owner: r.cfg.Owner, Limit: r.cfg.BatchSize, Lease: r.cfg.Lease})
	cancelClaim()
	claimedAt := time.Now()
	if overlapped && err == nil && len(claim.Records) < bg.size/2 && bg.size == r.cfg.BatchSize {
		// A full batch was settling and this claim found little: the
		// backlog's keys were held by it (a hot key), and the claim walked
		// past them. Claim after settling for a while, and claim again now.
		bg.serial = serialBatches
	}
	if overlapped && err == nil && len(claim.Records) == 0 {
		bg.wait()
		return r.cycle(ctx, work, bg)
	}
	if err != nil || len(claim.Records) == 0 {
		bg.wait()
		return 0, 0, err
	}
	settlements, pause := r.publishBatch(ctx, work, claim, leaseFrom, claimedAt)
	bg.wait() // settles stay in batch order
	bg.size = len(claim.Records)
	if pause > 0 || ctx.Err() != nil || bg.serial > 0 {
		bg.serial = max(0, bg.serial-1)
		r.settleAll(ctx, settlements)
		return len(claim.Records), pause, nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.settleAll(ctx, settlements)
	}()
	bg.done = done
	return len(claim.Records), 0, nil
}

func (r *Relay) janitor(ctx context.Context) {
	t := time.NewTicker(r.cfg.CleanupInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		total := 0
		for ctx.Err() == nil {
			n, err := r.store.DeletePublished(ctx, r.cfg.Retention, r.cfg.CleanupBatch)
			if err != nil {
				if ctx.Err() == nil {
					r.cfg.Logger.Warn("relay: janitor", "err", err)
				}
				break
			}
			total += n
			if n < r.cfg.CleanupBatch {
				break
			}
		}
		if total > 0 {
			r.cfg.Logger.Debug("relay: janitor deleted published events", "count", total)
		}
	}
}

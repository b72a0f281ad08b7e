package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outboxkit/outbox"
)

// tracker knows every event a scenario expects, with its key and its place
// among the events of that key, and checks what an independent consumer
// reads back: count, duplicates and per-key order.
type tracker struct {
	mu        sync.Mutex
	expect    map[uuid.UUID]slot
	committed map[uuid.UUID]time.Time
	consumed  map[uuid.UUID]time.Time
	next      map[string]int // the next place per key, for expectations added one by one
	last      map[string]int // the place of the latest consumed event per key
	dups      int
	inverted  int
	unknown   int
	lastAt    time.Time
	target    int
	done      chan struct{}
}

type slot struct {
	key   string
	place int
}

func newTracker() *tracker {
	return &tracker{
		expect: map[uuid.UUID]slot{}, committed: map[uuid.UUID]time.Time{}, consumed: map[uuid.UUID]time.Time{},
		next: map[string]int{}, last: map[string]int{}, done: make(chan struct{}),
	}
}

// expectNext registers id as the next event of key.
func (t *tracker) expectNext(id uuid.UUID, key string) {
	t.mu.Lock()
	t.expect[id] = slot{key, t.next[key]}
	t.next[key]++
	t.mu.Unlock()
}

// commit records when the transaction that wrote id committed.
func (t *tracker) commit(id uuid.UUID, at time.Time) {
	t.mu.Lock()
	t.committed[id] = at
	t.mu.Unlock()
}

// forget drops an event whose transaction failed.
func (t *tracker) forget(id uuid.UUID) {
	t.mu.Lock()
	delete(t.expect, id)
	t.mu.Unlock()
}

// wait arms the tracker: done closes once n distinct expected events were
// consumed.
func (t *tracker) arm(n int) <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.target = n
	t.maybeDone()
	return t.done
}

func (t *tracker) maybeDone() {
	if t.target > 0 && len(t.consumed) >= t.target {
		select {
		case <-t.done:
		default:
			close(t.done)
		}
	}
}

func (t *tracker) record(id uuid.UUID, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.expect[id]
	switch {
	case !ok:
		t.unknown++
		return
	case !t.consumed[id].IsZero():
		t.dups++
		return
	}
	t.consumed[id] = at
	t.lastAt = at
	if last, ok := t.last[s.key]; ok && s.place < last {
		t.inverted++
	} else {
		t.last[s.key] = s.place
	}
	t.maybeDone()
}

// report is the outcome of the checks.
type report struct {
	expected, consumed, dups, inverted, unknown int
}

func (t *tracker) report() report {
	t.mu.Lock()
	defer t.mu.Unlock()
	return report{len(t.expect), len(t.consumed), t.dups, t.inverted, t.unknown}
}

func (r report) ok() bool {
	return r.consumed == r.expected && r.inverted == 0 && r.unknown == 0
}

func (r report) String() string {
	return fmt.Sprintf("%d/%d consumed, %d dup, %d inv", r.consumed, r.expected, r.dups, r.inverted)
}

// lags returns commit→consumed latencies of the consumed events.
func (t *tracker) lags() []time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]time.Duration, 0, len(t.consumed))
	for id, at := range t.consumed {
		if c, ok := t.committed[id]; ok {
			out = append(out, max(0, at.Sub(c)))
		}
	}
	return out
}

// consumer reads a topic from its start with franz-go, an independent client,
// and feeds each record's event ID (the Watermill UUID header) to a tracker.
type consumer struct {
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}
}

func startConsumer(ctx context.Context, addr, topic string, t *tracker) (*consumer, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond), isolation())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	c := &consumer{cl: cl, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for ctx.Err() == nil {
			fetches := cl.PollFetches(ctx)
			at := time.Now()
			fetches.EachRecord(func(r *kgo.Record) {
				var id uuid.UUID
				for _, h := range r.Headers {
					if h.Key == outbox.HeaderMessageUUID {
						id, _ = uuid.Parse(string(h.Value))
					}
				}
				t.record(id, at)
			})
		}
	}()
	return c, nil
}

func (c *consumer) close() {
	c.cancel()
	<-c.done
	c.cl.Close()
}

// await waits for done, ctx or the timeout.
func await(ctx context.Context, done <-chan struct{}, timeout time.Duration) error {
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(timeout):
		return errors.New("timed out")
	}
}

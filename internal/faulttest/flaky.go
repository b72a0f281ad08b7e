package faulttest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker"
)

// Flaky wraps a publisher and fails messages before they are sent, on
// demand: a share at random, chosen event IDs, or all while it is down; it
// can also hold publishes back. It keeps the publisher contract: once a
// message of a topic and key fails, the later ones of that key are not sent
// and get outbox.ErrSkipped. Its failures never reach the broker, so they
// are no possible duplicates. A reclaimed message is never failed at
// random: failed before the publisher looked it up, it would lose its mark
// (see broker.Publisher).
type Flaky struct {
	inner broker.Publisher
	rate  float64
	mu    sync.Mutex
	rng   *rand.Rand
	fail  map[uuid.UUID]error
	down  error
	block chan struct{}
}

// NewFlaky returns a publisher that fails rate of the messages given to it
// at random (deterministically for a given seed) and sends the others to
// inner.
func NewFlaky(inner broker.Publisher, rate float64, seed uint64) *Flaky {
	return &Flaky{inner: inner, rate: rate, rng: rand.New(rand.NewPCG(seed, seed)), fail: map[uuid.UUID]error{}}
}

// FailID makes every publish of event id fail with err.
func (f *Flaky) FailID(id uuid.UUID, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[id] = err
}

// SetDown makes every publish fail with err until SetDown(nil).
func (f *Flaky) SetDown(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = err
}

// Block makes publishes wait until the returned function is called or their
// context ends; a publish whose context ended sends nothing.
func (f *Flaky) Block() (unblock func()) {
	ch := make(chan struct{})
	f.mu.Lock()
	f.block = ch
	f.mu.Unlock()
	return sync.OnceFunc(func() {
		f.mu.Lock()
		f.block = nil
		f.mu.Unlock()
		close(ch)
	})
}

// Publish implements broker.Publisher.
func (f *Flaky) Publish(ctx context.Context, msgs []*outbox.Message) []error {
	errs := make([]error, len(msgs))
	f.mu.Lock()
	block := f.block
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			for i := range errs {
				errs[i] = ctx.Err()
			}
			return errs
		}
	}
	failed := map[[2]string]bool{}
	var send []*outbox.Message
	var at []int
	f.mu.Lock()
	for i, m := range msgs {
		k := [2]string{m.Topic, m.Key}
		switch {
		case m.Key != "" && failed[k]:
			errs[i] = outbox.ErrSkipped
		case f.down != nil:
			errs[i] = f.down
		case f.fail[m.ID] != nil:
			errs[i] = f.fail[m.ID]
		case f.rate > 0 && !m.Reclaimed && f.rng.Float64() < f.rate:
			errs[i] = ErrInjected
		default:
			send = append(send, m)
			at = append(at, i)
		}
		if errs[i] != nil {
			failed[k] = true
		}
	}
	f.mu.Unlock()
	if len(send) > 0 {
		for j, err := range f.inner.Publish(ctx, send) {
			errs[at[j]] = err
		}
	}
	for _, err := range errs {
		if err != nil {
			return errs
		}
	}
	return nil
}

// RequireAccepted fails the test, naming each error, unless a publish call
// accepted every message (returned nil).
func RequireAccepted(t testing.TB, errs []error) {
	t.Helper()
	if errs == nil {
		return
	}
	var failed []string
	for i, err := range errs {
		if err != nil {
			failed = append(failed, fmt.Sprintf("message %d: %v", i, err))
		}
	}
	t.Fatalf("publish refused %d of %d messages:\n%s", len(failed), len(errs), strings.Join(failed, "\n"))
}

package faulttest

import (
	"context"
	"math/rand/v2"
	"sync"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker"
)

// Flaky wraps a real publisher and fails a share of the messages at random
// before they are sent, keeping the publisher contract: once a message of a
// topic and key fails, the later ones of that key are not sent and get
// outbox.ErrSkipped.
type Flaky struct {
	inner broker.Publisher
	rate  float64
	mu    sync.Mutex
	rng   *rand.Rand
}

// NewFlaky returns a publisher that fails rate of the messages given to it.
func NewFlaky(inner broker.Publisher, rate float64, seed uint64) *Flaky {
	return &Flaky{inner: inner, rate: rate, rng: rand.New(rand.NewPCG(seed, seed))}
}

// Publish implements broker.Publisher.
func (f *Flaky) Publish(ctx context.Context, msgs []*outbox.Message) []error {
	errs := make([]error, len(msgs))
	failed := map[[2]string]bool{}
	var send []*outbox.Message
	var at []int
	f.mu.Lock()
	for i, m := range msgs {
		k := [2]string{m.Topic, m.Key}
		switch {
		case m.Key != "" && failed[k]:
			errs[i] = outbox.ErrSkipped
		case f.rng.Float64() < f.rate:
			errs[i] = ErrInjected
			failed[k] = true
		default:
			send = append(send, m)
			at = append(at, i)
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

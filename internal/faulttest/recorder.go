package faulttest

import (
	"errors"
	"math/rand/v2"
	"slices"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/outboxkit/outbox"
)

// ErrInjected is the error a Recorder returns for an injected failure.
var ErrInjected = errors.New("injected publish failure")

// Recorder is a Watermill message.Publisher that appends what it accepts to
// an in-memory log and fails on demand: at random with a given rate, for
// chosen event IDs, or entirely while it is down.
type Recorder struct {
	mu       sync.Mutex
	log      []*message.Message
	rng      *rand.Rand
	failRate float64
	failIDs  map[string]error
	down     error
	block    chan struct{}
}

// NewRecorder returns a recorder that fails failRate of its publishes at
// random (deterministically for a given seed).
func NewRecorder(failRate float64, seed uint64) *Recorder {
	return &Recorder{rng: rand.New(rand.NewPCG(seed, seed)), failRate: failRate, failIDs: map[string]error{}}
}

// FailID makes every publish of event id fail with err.
func (r *Recorder) FailID(id uuid.UUID, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failIDs[id.String()] = err
}

// SetDown makes every publish fail with err until SetDown(nil).
func (r *Recorder) SetDown(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = err
}

// Block makes publishes wait until the returned function is called.
func (r *Recorder) Block() (unblock func()) {
	ch := make(chan struct{})
	r.mu.Lock()
	r.block = ch
	r.mu.Unlock()
	return sync.OnceFunc(func() {
		r.mu.Lock()
		r.block = nil
		r.mu.Unlock()
		close(ch)
	})
}

// Publish implements message.Publisher. It waits for a Block to end or the
// first message's context to be done.
func (r *Recorder) Publish(topic string, msgs ...*message.Message) error {
	r.mu.Lock()
	block := r.block
	r.mu.Unlock()
	if block != nil && len(msgs) > 0 {
		select {
		case <-block:
		case <-msgs[0].Context().Done():
			return msgs[0].Context().Err()
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down != nil {
		return r.down
	}
	for _, m := range msgs {
		if err := r.failIDs[m.UUID]; err != nil {
			return err
		}
	}
	if r.failRate > 0 && r.rng.Float64() < r.failRate {
		return ErrInjected
	}
	for _, m := range msgs {
		m.Metadata.Set("_topic", topic)
		r.log = append(r.log, m)
	}
	return nil
}

// Close implements message.Publisher.
func (r *Recorder) Close() error { return nil }

// Messages returns a copy of the log.
func (r *Recorder) Messages() []*message.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.log)
}

// Received returns the log as the checker reads it. The key of a message is
// its event key header if set, else its aggregate ID.
func (r *Recorder) Received() []Received {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Received, len(r.log))
	for i, m := range r.log {
		out[i] = Received{ID: uuid.MustParse(m.UUID), Key: m.Metadata.Get(outbox.HeaderAggregateID)}
	}
	return out
}

package faulttest

import (
	"errors"
	"slices"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/outboxkit/outbox/broker"
)

// ErrInjected is the error a Flaky publisher returns for a failure at
// random.
var ErrInjected = errors.New("injected publish failure")

// Recorder is a Watermill message.Publisher that appends what it accepts to
// an in-memory log, and fails on demand: for chosen event IDs, or entirely
// while it is down.
type Recorder struct {
	mu      sync.Mutex
	log     []*message.Message
	failIDs map[string]error
	down    error
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder {
	return &Recorder{failIDs: map[string]error{}}
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

// Publish implements message.Publisher.
func (r *Recorder) Publish(topic string, msgs ...*message.Message) error {
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
// its partition_key metadata, the event key that broker.ToWatermill sets.
func (r *Recorder) Received() []Received {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Received, len(r.log))
	for i, m := range r.log {
		out[i] = Received{ID: uuid.MustParse(m.UUID), Key: m.Metadata.Get(broker.MetadataPartitionKey)}
	}
	return out
}

package faulttest

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/outboxkit/outbox"
)

// ErrInjected is the error a Flaky publisher returns for a failure at
// random.
var ErrInjected = errors.New("injected publish failure")

// Recorder is an in-memory broker.Publisher: it accepts every message and
// appends it to a log. Wrap it in a Flaky to fail messages on demand.
type Recorder struct {
	mu  sync.Mutex
	log []*outbox.Message
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder { return &Recorder{} }

// Publish implements broker.Publisher.
func (r *Recorder) Publish(_ context.Context, msgs []*outbox.Message) []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log = append(r.log, msgs...)
	return nil
}

// Messages returns a copy of the log.
func (r *Recorder) Messages() []*outbox.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.log)
}

// Received returns the log as the checker reads it.
func (r *Recorder) Received() []Received {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Received, len(r.log))
	for i, m := range r.log {
		out[i] = Received{ID: m.ID, Key: m.Key}
	}
	return out
}

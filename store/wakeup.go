package store

import "sync"

// Waker is an optional interface of a [Store]: a store that knows when events
// were written (by this process, or through a database notification) offers
// wake-ups, so a relay publishes without waiting for its next poll.
type Waker interface {
	// Subscribe returns a channel that receives a value after events were
	// written, and a function that ends the subscription.
	Subscribe() (<-chan struct{}, func())
}

// Wakeups broadcasts wake-ups to subscribers. The zero value is ready to use;
// stores embed it to implement [Waker]. Sends never block: a subscriber that
// has a wake-up pending gets no second one.
type Wakeups struct {
	mu   sync.Mutex
	subs map[chan struct{}]struct{}
}

// Subscribe implements [Waker].
func (w *Wakeups) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	w.mu.Lock()
	if w.subs == nil {
		w.subs = make(map[chan struct{}]struct{})
	}
	w.subs[ch] = struct{}{}
	w.mu.Unlock()
	return ch, func() {
		w.mu.Lock()
		delete(w.subs, ch)
		w.mu.Unlock()
	}
}

// Wake sends a wake-up to every subscriber.
func (w *Wakeups) Wake() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

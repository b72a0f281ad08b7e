// Package wakeup broadcasts wake-ups from a store's writers to the relays
// subscribed to it (store.Waker).
package wakeup

import "sync"

// Broadcaster broadcasts wake-ups to subscribers. The zero value is ready to
// use. Sends never block: a subscriber that has a wake-up pending gets no
// second one.
type Broadcaster struct {
	mu   sync.Mutex
	subs map[chan struct{}]struct{}
}

// Subscribe returns a channel that receives a value after each Wake, and a
// function that ends the subscription.
func (w *Broadcaster) Subscribe() (<-chan struct{}, func()) {
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
func (w *Broadcaster) Wake() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

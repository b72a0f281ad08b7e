// Package faulttest holds what the fault and load tests share: one checker of
// the promises over what was written and what reached the broker, a
// publisher wrapper that fails on demand (Flaky), and a Watermill publisher
// that records what it accepts (Recorder).
package faulttest

import (
	"fmt"
	"strings"
	"sync"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox"
)

// Checker records what writers committed and rolled back, and checks what a
// broker received against it: nothing lost, nothing from rolled-back
// transactions, duplicates at most the counted ones, per-key order.
// It is safe for concurrent use.
type Checker struct {
	mu         sync.Mutex
	committed  map[uuid.UUID]position
	rolledBack map[uuid.UUID]bool
	perKey     map[string]int
}

type position struct {
	key   string
	index int // position within its key, in write order
}

// NewChecker returns an empty checker.
func NewChecker() *Checker {
	return &Checker{committed: map[uuid.UUID]position{}, rolledBack: map[uuid.UUID]bool{}, perKey: map[string]int{}}
}

// Committed records events whose transaction committed, in write order.
// Writers of one key must call it in the order they committed.
func (c *Checker) Committed(events ...outbox.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range events {
		key := e.Key
		if key == "" {
			key = e.AggregateID
		}
		c.committed[e.ID] = position{key, c.perKey[key]}
		c.perKey[key]++
	}
}

// RolledBack records events whose transaction (or savepoint, or statement)
// did not commit.
func (c *Checker) RolledBack(events ...outbox.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range events {
		c.rolledBack[e.ID] = true
	}
}

// Len returns the number of committed events.
func (c *Checker) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.committed)
}

// Received is one message as the broker delivered it.
type Received struct {
	ID  uuid.UUID
	Key string
}

// Report is the result of [Checker.Check].
type Report struct {
	Committed  int
	Received   int
	Lost       []uuid.UUID
	Unexpected []uuid.UUID // rolled back, or never written
	Duplicates int
	Inversions []string
	Counted    int64
}

// OK reports whether every promise held.
func (r Report) OK() bool {
	return len(r.Lost) == 0 && len(r.Unexpected) == 0 && len(r.Inversions) == 0 && int64(r.Duplicates) <= r.Counted
}

func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "committed %d, received %d, lost %d, unexpected %d, duplicates %d (counted %d), inversions %d",
		r.Committed, r.Received, len(r.Lost), len(r.Unexpected), r.Duplicates, r.Counted, len(r.Inversions))
	for i, inv := range r.Inversions {
		if i == 5 {
			b.WriteString("\n  ...")
			break
		}
		b.WriteString("\n  " + inv)
	}
	return b.String()
}

// Check compares received, in delivery order, with what was written.
// countedDuplicates is the sum of the relays' PossibleDuplicates.
// Per-key order is judged on first deliveries: a redelivery of an event
// already seen is a duplicate, not an inversion.
func (c *Checker) Check(received []Received, countedDuplicates int64) Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := Report{Committed: len(c.committed), Received: len(received), Counted: countedDuplicates}
	seen := make(map[uuid.UUID]bool, len(received))
	last := map[string]int{}
	for _, m := range received {
		if seen[m.ID] {
			r.Duplicates++
			continue
		}
		seen[m.ID] = true
		pos, ok := c.committed[m.ID]
		if !ok {
			r.Unexpected = append(r.Unexpected, m.ID)
			continue
		}
		if m.Key != pos.key {
			r.Inversions = append(r.Inversions, fmt.Sprintf("event %s written with key %q arrived with key %q", m.ID, pos.key, m.Key))
		}
		if prev, ok := last[pos.key]; ok && pos.index < prev {
			r.Inversions = append(r.Inversions, fmt.Sprintf("key %q: event #%d arrived after #%d", pos.key, pos.index, prev))
		}
		last[pos.key] = max(last[pos.key], pos.index)
	}
	for id := range c.committed {
		if !seen[id] {
			r.Lost = append(r.Lost, id)
		}
	}
	return r
}

// Missing returns how many committed events are not in received.
func (c *Checker) Missing(received []Received) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := make(map[uuid.UUID]bool, len(received))
	n := 0
	for _, m := range received {
		if _, ok := c.committed[m.ID]; ok && !seen[m.ID] {
			seen[m.ID] = true
			n++
		}
	}
	return len(c.committed) - n
}

package postgres

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// channel is the NOTIFY channel of a table: a plain identifier, so it needs
// no quoting in LISTEN or in a string literal.
func channel(table string) string {
	return "outbox_" + strings.ReplaceAll(table, ".", "_")
}

// listener LISTENs on a dedicated connection while the store has
// subscribers, and turns notifications into wake-ups.
type listener struct {
	channel string // "" when Notify is off

	mu     sync.Mutex
	subs   int
	cancel context.CancelFunc
	done   chan struct{}
}

// Subscribe implements store.Waker. With Notify on, the first subscriber
// starts the listener and the last one to leave stops it.
func (s *Store) Subscribe() (<-chan struct{}, func()) {
	ch, unsubscribe := s.wake.Subscribe()
	if s.listener.channel == "" {
		return ch, unsubscribe
	}
	l := &s.listener
	l.mu.Lock()
	if l.subs++; l.subs == 1 {
		ctx, cancel := context.WithCancel(context.Background())
		l.cancel, l.done = cancel, make(chan struct{})
		go s.listen(ctx, l.done)
	}
	l.mu.Unlock()
	return ch, sync.OnceFunc(func() {
		unsubscribe()
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.subs--; l.subs == 0 {
			l.cancel()
			<-l.done
		}
	})
}

// listen keeps a LISTEN connection until ctx ends, reconnecting after
// errors. After each (re)connect it wakes the subscribers once, since
// notifications sent while it was away are lost.
func (s *Store) listen(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	for wait := 100 * time.Millisecond; ctx.Err() == nil; wait = min(2*wait, 5*time.Second) {
		if s.listenOnce(ctx) {
			wait = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// listenOnce runs one LISTEN connection until an error or ctx ends, and
// reports whether it got as far as listening.
func (s *Store) listenOnce(ctx context.Context) bool {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return false
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+s.listener.channel); err != nil {
		return false
	}
	s.wake.Wake()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return true
		}
		s.wake.Wake()
	}
}

package main

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outboxkit/outbox"
)

// writer runs business transactions on one database: one business row, and
// with event set one outbox event in the same transaction.
type writer struct {
	name string
	// added and share are the targets: the most an event may add to one
	// writer's transaction, and the least share of business-only
	// throughput that 8 writers must keep; 0 for none.
	added time.Duration
	share float64
	setup func(ctx context.Context) (txFunc, func(), error)
}

// txFunc runs one business transaction.
type txFunc func(ctx context.Context, withEvent bool, i int) error

// pgWriter writes with PostgreSQL. With batched set, the transaction with an
// event sends the business row and the event (postgres.Store.Queue) as one
// pgx.Batch, as a service that batches its statements does: the event then
// costs no round trip of its own. The business-only transaction is the same
// either way.
func pgWriter(e *env, batched bool) writer {
	name, added := "PostgreSQL", 60*time.Microsecond
	if batched {
		name, added = "PostgreSQL, event in the business batch", 40*time.Microsecond
	}
	return writer{name, added, 0.85, func(ctx context.Context) (txFunc, func(), error) {
		st, dropStore, err := e.pgStore(ctx)
		if err != nil {
			return nil, nil, err
		}
		biz, dropBiz, err := e.pgBusinessTable(ctx)
		if err != nil {
			dropStore()
			return nil, nil, err
		}
		insert := "INSERT INTO " + biz + " (customer, amount) VALUES ($1, $2)"
		return func(ctx context.Context, withEvent bool, i int) error {
			key := fmt.Sprint("customer-", i%1000)
			tx, err := e.pg.Begin(ctx)
			if err != nil {
				return err
			}
			defer tx.Rollback(ctx)
			if !withEvent {
				if _, err := tx.Exec(ctx, insert, key, i); err != nil {
					return err
				}
				return tx.Commit(ctx)
			}
			ev, err := newEvent("orders", key, i)
			if err != nil {
				return err
			}
			if batched {
				b := &pgx.Batch{}
				b.Queue(insert, key, i)
				if err := st.Queue(ctx, b, ev); err != nil {
					return err
				}
				err = tx.SendBatch(ctx, b).Close()
			} else if _, err = tx.Exec(ctx, insert, key, i); err == nil {
				err = st.AddTx(ctx, tx, ev)
			}
			if err != nil {
				return err
			}
			return tx.Commit(ctx)
		}, func() { dropBiz(); dropStore() }, nil
	}}
}

// sqlStore is a store whose AddTx writes into a database/sql transaction.
type sqlStore interface {
	AddTx(ctx context.Context, tx *sql.Tx, events ...outbox.Event) error
}

func myWriter(e *env) writer {
	return sqlWriter("MariaDB", 80*time.Microsecond, 0.80, e.my, func(ctx context.Context) (sqlStore, func(), error) {
		return e.myStore(ctx)
	}, e.myBusinessTable)
}

// liteWriter writes with SQLite. It has no target: the table shows where it
// stands next to the servers.
func liteWriter(e *env) writer {
	return sqlWriter("SQLite", 0, 0, e.lite, func(ctx context.Context) (sqlStore, func(), error) {
		return e.liteStore(ctx)
	}, e.liteBusinessTable)
}

// sqlWriter writes with a database/sql database whose placeholders are "?".
func sqlWriter(name string, added time.Duration, share float64, db *sql.DB,
	newStore func(context.Context) (sqlStore, func(), error), newBiz func(context.Context) (string, func(), error)) writer {
	return writer{name, added, share, func(ctx context.Context) (txFunc, func(), error) {
		st, dropStore, err := newStore(ctx)
		if err != nil {
			return nil, nil, err
		}
		biz, dropBiz, err := newBiz(ctx)
		if err != nil {
			dropStore()
			return nil, nil, err
		}
		insert := "INSERT INTO " + biz + " (customer, amount) VALUES (?, ?)"
		return func(ctx context.Context, withEvent bool, i int) error {
			key := fmt.Sprint("customer-", i%1000)
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer tx.Rollback()
			if _, err := tx.ExecContext(ctx, insert, key, i); err != nil {
				return err
			}
			if withEvent {
				ev, err := newEvent("orders", key, i)
				if err != nil {
					return err
				}
				if err := st.AddTx(ctx, tx, ev); err != nil {
					return err
				}
			}
			return tx.Commit()
		}, func() { dropBiz(); dropStore() }, nil
	}}
}

// benchWrites measures business transactions with and without one outbox
// event. With one writer the two kinds alternate (the order flips every
// pair), and the added cost per event is the median of the paired
// differences, which cancels drift in the machine's load. With eight writers
// the kinds run in alternating phases and only throughput is compared.
func benchWrites(ctx context.Context, e *env, t *table, w writer) error {
	tx, drop, err := w.setup(ctx)
	if err != nil {
		return err
	}
	defer drop()
	n := e.o.writes
	logf("write %s: 1 writer, %d+%d transactions", w.name, n, n)
	// Warm the pool, the statement caches and the tables.
	for i := range 200 {
		if err := tx(ctx, i%2 == 0, i); err != nil {
			return err
		}
	}
	without := make([]time.Duration, 0, n)
	with := make([]time.Duration, 0, n)
	diffs := make([]time.Duration, 0, n)
	var sumWithout, sumWith time.Duration
	for i := range n {
		var d [2]time.Duration // [without, with]
		for j := range 2 {
			withEvent := (i+j)%2 == 1
			start := time.Now()
			if err := tx(ctx, withEvent, i); err != nil {
				return err
			}
			if withEvent {
				d[1] = time.Since(start)
			} else {
				d[0] = time.Since(start)
			}
		}
		without, with = append(without, d[0]), append(with, d[1])
		diffs = append(diffs, d[1]-d[0])
		sumWithout += d[0]
		sumWith += d[1]
	}
	lw, lo := summarize(without), summarize(with)
	t.add("write "+w.name, "1 writer, business only", fmt.Sprintf("p50 %.0f µs  p99 %.0f µs  %.0f tx/s",
		us(lw.p50), us(lw.p99), float64(n)/sumWithout.Seconds()), "", nil)
	t.add("write "+w.name, "1 writer, business + 1 event", fmt.Sprintf("p50 %.0f µs  p99 %.0f µs  %.0f tx/s",
		us(lo.p50), us(lo.p99), float64(n)/sumWith.Seconds()), "", nil)
	added := summarize(diffs).p50
	target, met := "", (*bool)(nil)
	if w.added > 0 {
		target, met = fmt.Sprintf("≤ %.0f µs", us(w.added)), check(added <= w.added)
	}
	t.add("write "+w.name, "1 writer, added cost per event (paired p50)", fmt.Sprintf("%.0f µs", us(added)), target, met)

	const writers = 8
	logf("write %s: %d writers, %d+%d transactions", w.name, writers, n, n)
	var elapsed [2]time.Duration
	var counts [2]int
	for phase := range 4 { // without, with, without, with
		withEvent := phase%2 == 1
		count := n / 2
		var next atomic.Int64
		var firstErr error
		var once sync.Once
		var wg sync.WaitGroup
		start := time.Now()
		for range writers {
			wg.Go(func() {
				for {
					i := int(next.Add(1))
					if i > count {
						return
					}
					if err := tx(ctx, withEvent, phase*count+i); err != nil {
						once.Do(func() { firstErr = err })
						return
					}
				}
			})
		}
		wg.Wait()
		if firstErr != nil {
			return firstErr
		}
		elapsed[phase%2] += time.Since(start)
		counts[phase%2] += count
	}
	bizOnly := float64(counts[0]) / elapsed[0].Seconds()
	withEv := float64(counts[1]) / elapsed[1].Seconds()
	t.add("write "+w.name, "8 writers, business only", fmt.Sprintf("%.0f tx/s", bizOnly), "", nil)
	target, met = "", nil
	if w.share > 0 {
		target, met = fmt.Sprintf("≥ %.0f%%", 100*w.share), check(withEv >= w.share*bizOnly)
	}
	t.add("write "+w.name, "8 writers, business + 1 event", fmt.Sprintf("%.0f tx/s (%.0f%% of business only)",
		withEv, 100*withEv/bizOnly), target, met)
	return nil
}

package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/store/postgres"
)

// steadyWriters commit the steady load; enough that a slow commit does not
// hold the schedule back.
const steadyWriters = 8

// commitFunc commits one business transaction that carries ev.
type commitFunc func(ctx context.Context, ev outbox.Event, i int) error

// steady commits e.o.rate transactions per second for e.o.duration, each a
// business row and one event, and returns the commit→consumed latencies once
// everything was consumed. The i-th transaction is due at start + i/rate; a
// writer that falls behind catches up without sleeping.
func steady(ctx context.Context, e *env, topic string, tr *tracker, commit commitFunc) (latencies, report, error) {
	total := int(e.o.duration.Seconds() * float64(e.o.rate))
	interval := time.Second / time.Duration(e.o.rate)
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	e.quiesce(ctx)
	start := time.Now()
	for w := range steadyWriters {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= total || ctx.Err() != nil {
					return
				}
				time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
				// Keys belong to one writer each, so that each key's
				// commit order is the order in which it wrote them.
				key := fmt.Sprintf("w%d-k%d", w, i%50)
				ev, err := newEvent(topic, key, i)
				if err != nil {
					failed.Add(1)
					continue
				}
				tr.expectNext(ev.ID, key)
				if err := commit(ctx, ev, i); err != nil {
					tr.forget(ev.ID)
					failed.Add(1)
					continue
				}
				tr.commit(ev.ID, time.Now())
			}
		})
	}
	wg.Wait()
	behind := time.Since(start) - e.o.duration
	if f := failed.Load(); f > 0 {
		return latencies{}, report{}, fmt.Errorf("%d of %d transactions failed", f, total)
	}
	err := await(ctx, tr.arm(total), 30*time.Second)
	time.Sleep(200 * time.Millisecond) // late duplicates, if any
	rep := tr.report()
	if err != nil {
		return latencies{}, rep, fmt.Errorf("%w (%v)", err, rep)
	}
	if behind > time.Second {
		logf("steady: the writers ended %v behind schedule", behind.Round(time.Millisecond))
	}
	return summarize(tr.lags()), rep, nil
}

// pgCommit returns a commitFunc that writes a business row into biz and
// the event through write, in one PostgreSQL transaction.
func (e *env) pgCommit(biz string, write func(ctx context.Context, tx pgx.Tx, ev outbox.Event) error) commitFunc {
	insert := "INSERT INTO " + biz + " (customer, amount) VALUES ($1, $2)"
	return func(ctx context.Context, ev outbox.Event, i int) error {
		tx, err := e.pg.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, insert, ev.Key, i); err != nil {
			return err
		}
		if err := write(ctx, tx, ev); err != nil {
			return err
		}
		return tx.Commit(ctx)
	}
}

// relayPlace is where the steady run's relay runs and how it learns of
// new events.
type relayPlace int

const (
	inProcess     relayPlace = iota // woken by the writers' AddTx
	otherPolling                    // a child process with the defaults: it polls
	otherNotified                   // a child process, writers and relay with Notify on
)

func (p relayPlace) String() string {
	return [...]string{"in process", "other process, polling", "other process, NOTIFY"}[p]
}

// steadyOurs runs the steady load with our relay.
func steadyOurs(ctx context.Context, e *env, t *table, section string, place relayPlace) (latencies, error) {
	name := "relay in process (in-process wake)"
	limit50, limit99 := 800*time.Microsecond, 5*time.Millisecond
	switch place {
	case otherPolling:
		name = "relay in another process (polling, defaults)"
		limit50, limit99 = 2*time.Millisecond, 10*time.Millisecond
	case otherNotified:
		name = "relay in another process (LISTEN/NOTIFY on)"
		limit50, limit99 = 0, 0
	}
	logf("steady %s: %d events/s for %v", name, e.o.rate, e.o.duration)
	ot, err := e.outboxTable(ctx, "PostgreSQL")
	if err != nil {
		return latencies{}, err
	}
	defer ot.drop()
	pg := ot.st.(*postgres.Store)
	if place == otherNotified {
		if pg, err = postgres.New(e.pg, postgres.Config{Table: ot.table, Notify: true}); err != nil {
			return latencies{}, err
		}
	}
	biz, dropBiz, err := e.pgBusinessTable(ctx)
	if err != nil {
		return latencies{}, err
	}
	defer dropBiz()
	topic, err := e.topic(ctx)
	if err != nil {
		return latencies{}, err
	}
	tr := newTracker()
	c, err := startConsumer(ctx, e.kafkaAddr, topic, tr)
	if err != nil {
		return latencies{}, err
	}
	defer c.close()
	if place != inProcess {
		ch, err := startChild(ctx, e, ot.table, place == otherNotified)
		if err != nil {
			return latencies{}, err
		}
		defer ch.stop()
	} else {
		stop, err := runRelays(ctx, ot.st, e.kafkaAddr, 1, false)
		if err != nil {
			return latencies{}, err
		}
		defer stop()
	}
	lat, rep, err := steady(ctx, e, topic, tr, e.pgCommit(biz, func(ctx context.Context, tx pgx.Tx, ev outbox.Event) error {
		return pg.AddTx(ctx, tx, ev)
	}))
	if err != nil {
		return latencies{}, fmt.Errorf("%s: %w", name, err)
	}
	target, met := "", check(rep.ok())
	if limit50 > 0 {
		target = fmt.Sprintf("p50 ≤ %g ms, p99 ≤ %g ms", ms(limit50), ms(limit99))
		met = check(rep.ok() && lat.p50 <= limit50 && lat.p99 <= limit99)
	}
	t.add(section, name, fmt.Sprintf("%v  [%v]", lat, rep), target, met)
	return lat, nil
}

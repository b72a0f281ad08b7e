package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker/kafka"
	"github.com/outboxkit/outbox/relay"
	"github.com/outboxkit/outbox/store"
)

// outboxTable is a fresh outbox table on one database.
type outboxTable struct {
	st store.Store
	// add writes events in one transaction.
	add  func(ctx context.Context, evs []outbox.Event) error
	drop func()
	// table is the table's name, for a relay in another process.
	table string
}

func (e *env) outboxTable(ctx context.Context, db string) (*outboxTable, error) {
	switch db {
	case "PostgreSQL":
		st, drop, err := e.pgStore(ctx)
		if err != nil {
			return nil, err
		}
		return &outboxTable{st: st, drop: drop, table: st.Table(), add: func(ctx context.Context, evs []outbox.Event) error {
			tx, err := e.pg.Begin(ctx)
			if err != nil {
				return err
			}
			defer tx.Rollback(ctx)
			if err := st.AddTx(ctx, tx, evs...); err != nil {
				return err
			}
			return tx.Commit(ctx)
		}}, nil
	case "MariaDB":
		st, drop, err := e.myStore(ctx)
		if err != nil {
			return nil, err
		}
		return &outboxTable{st: st, drop: drop, table: st.Table(), add: func(ctx context.Context, evs []outbox.Event) error {
			tx, err := e.my.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer tx.Rollback()
			if err := st.AddTx(ctx, tx, evs...); err != nil {
				return err
			}
			return tx.Commit()
		}}, nil
	}
	return nil, fmt.Errorf("unknown database %q", db)
}

// preload writes n events over keys keys to ot in transactions of 1000
// events, and registers them with tr in write order.
func preload(ctx context.Context, ot *outboxTable, topic string, n, keys int, tr *tracker) error {
	batch := make([]outbox.Event, 0, 1000)
	for i := range n {
		key := fmt.Sprint("key-", i%keys)
		ev, err := newEvent(topic, key, i)
		if err != nil {
			return err
		}
		tr.expectNext(ev.ID, key)
		batch = append(batch, ev)
		if len(batch) == cap(batch) || i == n-1 {
			if err := ot.add(ctx, batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	return nil
}

// relayConfig is the configuration of every relay of the benchmark: the
// defaults, without the janitor.
func relayConfig(owner string) relay.Config {
	return relay.Config{Owner: owner, Retention: -1}
}

// runRelays starts n relays on st, each with a Kafka publisher of its own as
// separate deployments would have, and returns a function that stops them.
func runRelays(ctx context.Context, st store.Store, addr string, n int) (func(), error) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var pubs []*kafka.Publisher
	stop := func() {
		cancel()
		wg.Wait()
		for _, p := range pubs {
			p.Close()
		}
	}
	for i := range n {
		p, err := kafka.New(publisherConfig(addr))
		if err != nil {
			stop()
			return nil, err
		}
		pubs = append(pubs, p)
		r, err := relay.New(st, p, relayConfig(fmt.Sprint("bench-", i)))
		if err != nil {
			stop()
			return nil, err
		}
		wg.Go(func() { _ = r.Run(ctx) })
	}
	return stop, nil
}

type drainResult struct {
	rate float64 // events/s
}

// drainOurs relays a pre-loaded backlog of e.o.events events over keys keys
// with relays relays, and checks it back on the topic.
func drainOurs(ctx context.Context, e *env, t *table, db string, keys, relays int) (drainResult, error) {
	n := e.o.events
	name := fmt.Sprintf("%s, %d keys, %d relay", db, keys, relays)
	if relays > 1 {
		name += "s"
	}
	logf("drain %s: loading %d events", name, n)
	ot, err := e.outboxTable(ctx, db)
	if err != nil {
		return drainResult{}, err
	}
	defer ot.drop()
	topic, err := e.topic(ctx)
	if err != nil {
		return drainResult{}, err
	}
	tr := newTracker()
	if err := preload(ctx, ot, topic, n, keys, tr); err != nil {
		return drainResult{}, err
	}
	c, err := startConsumer(ctx, e.kafkaAddr, topic, tr)
	if err != nil {
		return drainResult{}, err
	}
	defer c.close()
	e.quiesce(ctx)
	logf("drain %s: relaying", name)
	start := time.Now()
	stop, err := runRelays(ctx, ot.st, e.kafkaAddr, relays)
	if err != nil {
		return drainResult{}, err
	}
	err = await(ctx, tr.arm(n), drainTimeout(n))
	stop()
	time.Sleep(200 * time.Millisecond) // late duplicates, if any
	rep := tr.report()
	if err != nil {
		return drainResult{}, fmt.Errorf("%s: %w (%v)", name, err, rep)
	}
	tr.mu.Lock()
	elapsed := tr.lastAt.Sub(start)
	tr.mu.Unlock()
	rate := float64(n) / elapsed.Seconds()
	target, met := "", (*bool)(nil)
	switch {
	case db != "PostgreSQL":
	case relays > 1:
		target, met = "no slower than 1 relay, 0 inv", check(rep.ok() && rate >= 0.95*drainOneRelay)
	case keys < 100:
		target, met = "≥ 15,000/s", check(rep.ok() && rate >= 15_000)
	default:
		target, met = "≥ 30,000/s", check(rep.ok() && rate >= 30_000)
		drainOneRelay = rate
	}
	if db != "PostgreSQL" {
		met = check(rep.ok())
	}
	t.add("drain (ours)", name, fmt.Sprintf("%.0f events/s  [%v]", rate, rep), target, met)
	return drainResult{rate: rate}, nil
}

// drainOneRelay is the rate of the 1-relay PostgreSQL drain, which the
// 3-relay drain must match. The 5% allowance absorbs run-to-run noise.
var drainOneRelay float64

func drainTimeout(n int) time.Duration { return 30*time.Second + time.Duration(n)*time.Millisecond }

package main

import (
	"context"
	"database/sql"
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
		return sqlOutboxTable(e.my, st, drop, st.Table()), nil
	case "SQLite":
		st, drop, err := e.liteStore(ctx)
		if err != nil {
			return nil, err
		}
		return sqlOutboxTable(e.lite, st, drop, st.Table()), nil
	}
	return nil, fmt.Errorf("unknown database %q", db)
}

// sqlOutboxTable is the outboxTable of a store over a database/sql database.
func sqlOutboxTable(db *sql.DB, st interface {
	store.Store
	sqlStore
}, drop func(), table string) *outboxTable {
	return &outboxTable{st: st, drop: drop, table: table, add: func(ctx context.Context, evs []outbox.Event) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if err := st.AddTx(ctx, tx, evs...); err != nil {
			return err
		}
		return tx.Commit()
	}}
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
// defaults, without the janitor, or deleting what it publishes.
func relayConfig(owner string, deleteOnPublish bool) relay.Config {
	cfg := relay.Config{Owner: owner, Retention: relay.KeepForever}
	if deleteOnPublish {
		cfg.Retention = relay.DeleteOnPublish
	}
	return cfg
}

// runRelays starts n relays on st, each with a Kafka publisher of its own as
// separate deployments would have, and returns a function that stops them.
func runRelays(ctx context.Context, st store.Store, addr string, n int, deleteOnPublish bool) (func(), error) {
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
		r, err := relay.New(st, p, relayConfig(fmt.Sprint("bench-", i), deleteOnPublish))
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

// drainCase is one drain scenario.
type drainCase struct {
	db           string // "PostgreSQL", "MariaDB" or "SQLite"
	keys, relays int
	// deleteOnPublish runs the relays with Retention DeleteOnPublish.
	deleteOnPublish bool
	// target is the scenario's target in events/s, 0 if none; sameAsOne
	// also requires at least 95% of the 1-relay PostgreSQL drain of the
	// same run.
	target    float64
	sameAsOne bool
}

func (c drainCase) name() string {
	name := fmt.Sprintf("%s, %d keys, %d relay", c.db, c.keys, c.relays)
	if c.relays > 1 {
		name += "s"
	}
	if c.deleteOnPublish {
		name += ", publish-and-delete"
	}
	return name
}

// drainOurs relays a pre-loaded backlog of e.o.events events and checks it
// back on the topic.
func drainOurs(ctx context.Context, e *env, t *table, section string, c drainCase) (drainResult, error) {
	n := e.o.events
	name := c.name()
	logf("drain %s: loading %d events", name, n)
	ot, err := e.outboxTable(ctx, c.db)
	if err != nil {
		return drainResult{}, err
	}
	defer ot.drop()
	topic, err := e.topic(ctx)
	if err != nil {
		return drainResult{}, err
	}
	tr := newTracker()
	if err := preload(ctx, ot, topic, n, c.keys, tr); err != nil {
		return drainResult{}, err
	}
	cons, err := startConsumer(ctx, e.kafkaAddr, topic, tr)
	if err != nil {
		return drainResult{}, err
	}
	defer cons.close()
	e.quiesce(ctx)
	logf("drain %s: relaying", name)
	start := time.Now()
	stop, err := runRelays(ctx, ot.st, e.kafkaAddr, c.relays, c.deleteOnPublish)
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
	target, met := "", check(rep.ok())
	if c.target > 0 {
		target = fmt.Sprintf("≥ %s/s", thousands(c.target))
		met = check(rep.ok() && rate >= c.target)
	}
	if c.sameAsOne {
		target += ", no slower than 1 relay, 0 inv"
		met = check(*met && rate >= 0.95*e.drainOneRelay)
	}
	t.add(section, name, fmt.Sprintf("%.0f events/s  [%v]", rate, rep), target, met)
	return drainResult{rate: rate}, nil
}

// thousands formats n with a comma every three digits.
func thousands(n float64) string {
	s := fmt.Sprintf("%.0f", n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func drainTimeout(n int) time.Duration { return 30*time.Second + time.Duration(n)*time.Millisecond }

package main

import (
	"context"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"

	"github.com/outboxkit/outbox"
)

// The forwarder setup follows Watermill's documentation and its
// transactional-events-forwarder example: a watermill-sql publisher on the
// business transaction wrapped in forwarder.NewPublisher, a watermill-sql
// subscriber with DefaultPostgreSQLSchema and DefaultPostgreSQLOffsetsAdapter,
// components/forwarder, and a watermill-kafka publisher with its default
// (synchronous) sarama configuration. "docs config" leaves every other knob at
// its default (batch 100, 1 s poll); "tuned" sets SubscribeBatchSize 1000 and
// PollInterval 10 ms. The only addition is a partitioning marshaler on the
// event key, without which Kafka would not keep any per-key order.

// keyMetadata carries the event key to the partitioning marshaler.
const keyMetadata = "partition_key"

// sqlForwarder is the SQL side of one forwarder scenario: its tables and the
// subscriber that reads them.
type sqlForwarder struct {
	topic   string // the forwarder's SQL topic
	tables  []string
	schema  wsql.DefaultPostgreSQLSchema
	sub     *wsql.Subscriber
	e       *env
	fwd     *forwarder.Forwarder
	kpub    *wkafka.Publisher
	stopped chan struct{}
}

func fwdName(tuned bool) string {
	if tuned {
		return "forwarder (tuned: batch 1000, poll 10 ms)"
	}
	return "forwarder (docs config: batch 100, poll 1 s)"
}

func newSQLForwarder(ctx context.Context, e *env, tuned bool) (*sqlForwarder, error) {
	f := &sqlForwarder{topic: fresh("bench_fwd"), e: e}
	messages, offsets := `"`+f.topic+`_messages"`, `"`+f.topic+`_offsets"`
	f.tables = []string{messages, offsets}
	f.schema = wsql.DefaultPostgreSQLSchema{GenerateMessagesTableName: func(string) string { return messages }}
	cfg := wsql.SubscriberConfig{
		SchemaAdapter:    &f.schema,
		OffsetsAdapter:   wsql.DefaultPostgreSQLOffsetsAdapter{GenerateMessagesOffsetsTableName: func(string) string { return offsets }},
		InitializeSchema: true,
	}
	if tuned {
		f.schema.SubscribeBatchSize = 1000
		cfg.PollInterval = 10 * time.Millisecond
	}
	sub, err := wsql.NewSubscriber(wsql.BeginnerFromPgx(e.pg), cfg, watermill.NopLogger{})
	if err != nil {
		return nil, err
	}
	f.sub = sub
	if err := sub.SubscribeInitialize(f.topic); err != nil {
		f.close()
		return nil, err
	}
	return f, nil
}

// publishTx writes events to the forwarder's table inside tx, as a service
// does with a forwarder publisher over its transaction.
func (f *sqlForwarder) publishTx(tx pgx.Tx, topic string, evs ...outbox.Event) error {
	p, err := wsql.NewPublisher(wsql.TxFromPgx(tx), wsql.PublisherConfig{SchemaAdapter: f.schema}, watermill.NopLogger{})
	if err != nil {
		return err
	}
	msgs := make([]*message.Message, len(evs))
	for i, ev := range evs {
		m := message.NewMessage(ev.ID.String(), message.Payload(ev.Payload))
		for k, v := range ev.Headers {
			m.Metadata.Set(k, v)
		}
		m.Metadata.Set(outbox.HeaderEventType, ev.EventType)
		m.Metadata.Set(outbox.HeaderAggregateType, ev.AggregateType)
		m.Metadata.Set(outbox.HeaderAggregateID, ev.AggregateID)
		m.Metadata.Set(keyMetadata, ev.Key)
		msgs[i] = m
	}
	return forwarder.NewPublisher(p, forwarder.PublisherConfig{ForwarderTopic: f.topic}).Publish(topic, msgs...)
}

// start runs the forwarder into Kafka.
func (f *sqlForwarder) start(ctx context.Context) error {
	kpub, err := wkafka.NewPublisher(wkafka.PublisherConfig{
		Brokers: []string{f.e.kafkaAddr},
		Marshaler: wkafka.NewWithPartitioningMarshaler(func(_ string, m *message.Message) (string, error) {
			return m.Metadata.Get(keyMetadata), nil
		}),
	}, watermill.NopLogger{})
	if err != nil {
		return err
	}
	f.kpub = kpub
	fwd, err := forwarder.NewForwarder(f.sub, kpub, watermill.NopLogger{}, forwarder.Config{ForwarderTopic: f.topic})
	if err != nil {
		return err
	}
	f.fwd = fwd
	f.stopped = make(chan struct{})
	go func() {
		defer close(f.stopped)
		_ = fwd.Run(ctx)
	}()
	select {
	case <-fwd.Running():
		return nil
	case <-f.stopped:
		return fmt.Errorf("forwarder stopped at start")
	}
}

func (f *sqlForwarder) close() {
	if f.fwd != nil {
		_ = f.fwd.Close()
		<-f.stopped
	}
	if f.kpub != nil {
		_ = f.kpub.Close()
	}
	_ = f.sub.Close()
	for _, t := range f.tables {
		_, _ = f.e.pg.Exec(context.Background(), "DROP TABLE IF EXISTS "+t)
	}
}

// drainForwarder is drainOurs through the forwarder: 1 forwarder, the
// default number of keys.
func drainForwarder(ctx context.Context, e *env, t *table, tuned bool) (drainResult, error) {
	n, name := e.o.events, fwdName(tuned)
	logf("drain %s: loading %d events", name, n)
	f, err := newSQLForwarder(ctx, e, tuned)
	if err != nil {
		return drainResult{}, err
	}
	defer f.close()
	topic, err := e.topic(ctx)
	if err != nil {
		return drainResult{}, err
	}
	tr := newTracker()
	for from := 0; from < n; from += 1000 {
		evs := make([]outbox.Event, 0, 1000)
		for i := from; i < min(n, from+1000); i++ {
			key := fmt.Sprint("key-", i%e.o.keys)
			ev, err := newEvent(topic, key, i)
			if err != nil {
				return drainResult{}, err
			}
			tr.expectNext(ev.ID, key)
			evs = append(evs, ev)
		}
		tx, err := e.pg.Begin(ctx)
		if err != nil {
			return drainResult{}, err
		}
		if err := f.publishTx(tx, topic, evs...); err != nil {
			_ = tx.Rollback(ctx)
			return drainResult{}, err
		}
		if err := tx.Commit(ctx); err != nil {
			return drainResult{}, err
		}
	}
	c, err := startConsumer(ctx, e.kafkaAddr, topic, tr)
	if err != nil {
		return drainResult{}, err
	}
	defer c.close()
	e.quiesce(ctx)
	logf("drain %s: forwarding", name)
	start := time.Now()
	if err := f.start(ctx); err != nil {
		return drainResult{}, err
	}
	if err := await(ctx, tr.arm(n), drainTimeout(n)+time.Duration(n)*time.Millisecond); err != nil {
		return drainResult{}, fmt.Errorf("%w (%v)", err, tr.report())
	}
	rep := tr.report()
	tr.mu.Lock()
	rate := float64(n) / tr.lastAt.Sub(start).Seconds()
	tr.mu.Unlock()
	t.add("drain (Watermill)", fmt.Sprintf("PostgreSQL, %d keys, %s", e.o.keys, name),
		fmt.Sprintf("%.0f events/s  [%v]", rate, rep), "", nil)
	return drainResult{rate: rate}, nil
}

// steadyForwarder is steadyOurs through the forwarder, in this process.
func steadyForwarder(ctx context.Context, e *env, t *table, tuned bool) (latencies, error) {
	name := fwdName(tuned)
	logf("steady %s: %d events/s for %v", name, e.o.rate, e.o.duration)
	f, err := newSQLForwarder(ctx, e, tuned)
	if err != nil {
		return latencies{}, err
	}
	defer f.close()
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
	if err := f.start(ctx); err != nil {
		return latencies{}, err
	}
	lat, rep, err := steady(ctx, e, topic, tr, e.pgCommit(biz, func(_ context.Context, tx pgx.Tx, ev outbox.Event) error {
		return f.publishTx(tx, topic, ev)
	}))
	if err != nil {
		return latencies{}, fmt.Errorf("%s: %w", name, err)
	}
	t.add("steady (Watermill)", name, fmt.Sprintf("%v  [%v]", lat, rep), "", nil)
	return lat, nil
}

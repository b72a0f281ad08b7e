package e2e_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker/kafka/devkafka"
	"github.com/outboxkit/outbox/internal/faulttest"
	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/store/storetest"
)

func newBroker(t *testing.T, cfg devkafka.Config) *devkafka.Broker {
	t.Helper()
	b, err := devkafka.New(cfg)
	require.NoError(t, err)
	t.Cleanup(b.Close)
	return b
}

// topicConsumer reads a topic from its start with an independent client
// (franz-go), keeping per-partition delivery order.
type topicConsumer struct {
	mu       sync.Mutex
	received []faulttest.Received
	unique   map[uuid.UUID]bool
}

func consume(t *testing.T, addr, topic string) *topicConsumer {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.AllowAutoTopicCreation())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	tc := &topicConsumer{unique: map[uuid.UUID]bool{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fetches := cl.PollFetches(ctx)
			fetches.EachRecord(func(r *kgo.Record) {
				var id uuid.UUID
				for _, h := range r.Headers {
					if h.Key == outbox.HeaderMessageUUID {
						id, _ = uuid.Parse(string(h.Value))
					}
				}
				tc.mu.Lock()
				tc.received = append(tc.received, faulttest.Received{ID: id, Key: string(r.Key)})
				tc.unique[id] = true
				tc.mu.Unlock()
			})
		}
	}()
	t.Cleanup(func() { cancel(); <-done; cl.Close() })
	return tc
}

func (tc *topicConsumer) snapshot() []faulttest.Received {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return append([]faulttest.Received(nil), tc.received...)
}

// waitAll waits until every committed event was received, then a moment
// more so that late duplicates are counted too.
func (tc *topicConsumer) waitAll(t *testing.T, c *faulttest.Checker, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for c.Missing(tc.snapshot()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events missing after %v", c.Missing(tc.snapshot()), c.Len(), timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
}

func event(topic, key string, i int) outbox.Event {
	id := outbox.NewID()
	return outbox.Event{
		ID: id, Topic: topic, AggregateType: "order", AggregateID: key, EventType: "order.updated.v1",
		Payload: fmt.Appendf(nil, `{"event_id":%q,"event_type":"order.updated.v1","data":{"key":%q,"n":%d}}`, id, key, i),
	}
}

func commit(t testing.TB, h storetest.Harness, c *faulttest.Checker, events ...outbox.Event) {
	t.Helper()
	ctx := context.Background()
	tx, err := h.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, tx.Add(ctx, events...))
	require.NoError(t, tx.Commit(ctx))
	c.Committed(events...)
}

// writeSteadily commits one event per tick at rate events/s over keys for d,
// each in its own transaction, and returns when done.
func writeSteadily(t *testing.T, h storetest.Harness, c *faulttest.Checker, topic string, keys, rate int, d time.Duration) {
	t.Helper()
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	end := time.Now().Add(d)
	for i := 0; time.Now().Before(end); i++ {
		<-tick.C
		commit(t, h, c, event(topic, fmt.Sprint("key-", i%keys), i))
	}
}

func count(t *testing.T, h storetest.Harness, where string) int64 {
	t.Helper()
	n, err := h.Count(context.Background(), where)
	require.NoError(t, err)
	return n
}

// harnesses are the databases the fault tests run on.
var harnesses = []struct {
	dialect string
	new     func(*testing.T) storetest.Harness
}{{"postgres", testenv.PostgresHarness}, {"mysql", testenv.MySQLHarness}}

// tableOf returns the outbox table of a harness's store.
func tableOf(h storetest.Harness) string {
	return h.Store.(interface{ Table() string }).Table()
}

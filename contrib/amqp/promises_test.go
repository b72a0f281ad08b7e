package outboxamqp_test

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
	outboxamqp "github.com/outboxkit/outbox/contrib/amqp"
	"github.com/outboxkit/outbox/internal/faulttest"
	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/internal/testenv/rabbitmq"
	"github.com/outboxkit/outbox/relay"
	"github.com/outboxkit/outbox/relay/relaytest"
	"github.com/outboxkit/outbox/store/storetest"
)

// The promises as they hold on RabbitMQ with this package's configuration
// (docs/rabbitmq.md sums them up), each against the real server; network
// faults come from a proxy between the publisher and the server, while the
// consumer that checks what arrived connects directly.

func event(topic, key string, i int) outbox.Event {
	e := relaytest.Event(key, i)
	e.Topic = topic
	return e
}

// message returns an outbox message for topic and key, as the relay hands
// it to a publisher.
func message(topic, key string) *outbox.Message {
	id := outbox.NewID()
	return &outbox.Message{ID: id, Topic: topic, Key: key, Value: []byte(`{}`),
		Headers: map[string]string{outbox.HeaderMessageUUID: id.String()}}
}

// commit writes events in one committed transaction and records them.
func commit(t *testing.T, h storetest.Harness, c *faulttest.Checker, events ...outbox.Event) {
	t.Helper()
	ctx := context.Background()
	tx, err := h.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, tx.Add(ctx, events...))
	require.NoError(t, tx.Commit(ctx))
	c.Committed(events...)
}

func count(t *testing.T, h storetest.Harness, where string) int64 {
	t.Helper()
	n, err := h.Count(context.Background(), where)
	require.NoError(t, err)
	return n
}

func host(t *testing.T, u string) string {
	t.Helper()
	parsed, err := url.Parse(u)
	require.NoError(t, err)
	return parsed.Host
}

// Per-key order holds per queue, not across queues: the consistent-hash
// exchange routes every event of a key to the same queue, and a queue keeps
// the order in which its messages were confirmed, so a consumer of a queue
// sees each of its keys' events in write order, with two relays. Nothing
// orders one queue's messages against another's: order is per key, never
// global, as on Kafka's partitions.
func TestPerKeyOrderPerQueue(t *testing.T) {
	t.Parallel()
	u := rabbitmq.URL(t)
	h := testenv.PostgresHarness(t)
	topic, queues := declare(t, u, 4)
	c := consume(t, u, queues...)
	pub, _ := newPublisher(t, u)
	check := faulttest.NewChecker()
	var relays []*relay.Relay
	for i := range 2 {
		cfg := relaytest.FastConfig()
		cfg.Owner = fmt.Sprint("relay-", i)
		r, _ := relaytest.Start(t, h.Store, pub, cfg)
		relays = append(relays, r)
	}
	const keys, rounds = 100, 10
	for i := range rounds {
		var batch []outbox.Event
		for k := range keys {
			batch = append(batch, event(topic, fmt.Sprint("key-", k), i))
		}
		commit(t, h, check, batch...)
	}
	relaytest.Eventually(t, time.Minute, "all events", func() bool { return check.Missing(c.Received()) == 0 })
	var counted int64
	for _, r := range relays {
		counted += r.Stats().PossibleDuplicates
	}
	report := check.Check(c.Received(), counted)
	require.True(t, report.OK(), report.String())

	keysPerQueue := map[string]int{}
	for key, qs := range c.queuesOfKeys() {
		require.Len(t, qs, 1, "key %s went to one queue", key)
		for q := range qs {
			keysPerQueue[q]++
		}
	}
	require.Len(t, keysPerQueue, len(queues), "the keys spread over every queue: %v", keysPerQueue)
}

// A RabbitMQ that cannot be reached uses up no attempts and counts no
// duplicates: while its connection is down, watermill-amqp answers that it
// is not connected, which Classify reports as unreachable and not sent, so
// the relay releases the events without an attempt. Once the server answers
// again watermill-amqp reconnects by itself, and every event goes out in
// order.
func TestOutageBurnsNoAttempts(t *testing.T) {
	t.Parallel()
	u := rabbitmq.URL(t)
	h := testenv.PostgresHarness(t)
	topic, queues := declare(t, u, 2)
	c := consume(t, u, queues...)
	p := newProxy(t, host(t, u))
	pub, dialed := viaProxy(t, p, u, nil)
	p.Down()
	dialed.Wait(2) // watermill-amqp saw the connection break and dials again, refused

	check := faulttest.NewChecker()
	cfg := relaytest.FastConfig()
	cfg.MaxRetries = 2
	r, _ := relaytest.Start(t, h.Store, pub, cfg)
	for k := range 10 {
		commit(t, h, check, event(topic, fmt.Sprint("k", k), 0), event(topic, fmt.Sprint("k", k), 1))
	}
	relaytest.Eventually(t, 30*time.Second, "claims meet the outage", func() bool { return r.Stats().Released >= 40 })
	require.Zero(t, count(t, h, "retry_count > 0"), "no attempt used up")
	require.Zero(t, count(t, h, "parked_at IS NOT NULL"))
	require.Zero(t, r.Stats().PossibleDuplicates, "nothing was sent, so nothing counts as a possible duplicate")

	p.Up(t)
	relaytest.Eventually(t, time.Minute, "all published after the outage", func() bool { return check.Missing(c.Received()) == 0 })
	report := check.Check(c.Received(), r.Stats().PossibleDuplicates)
	require.True(t, report.OK(), report.String())
}

// Duplicates are counted, and only come from a publish whose outcome the
// publisher cannot know: the connection breaks after the message was
// written and before its confirm arrived. Either the server got it (its
// confirm was lost) or not (the message was lost on the way); Publish
// reports an unknown outcome in both cases, the relay counts a possible
// duplicate, uses up no attempt, and publishes the event again once
// watermill-amqp has reconnected. Nothing is lost, and the queue holds the
// event twice only when the server got the first copy.
func TestBrokenPublishIsCounted(t *testing.T) {
	t.Parallel()
	u := rabbitmq.URL(t)
	for _, tc := range []struct {
		name       string
		dir        int
		from       uint32
		duplicates int
	}{
		{"ConfirmLost", toClient, basicAck, 1},
		{"MessageLost", toServer, basicPublish, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := testenv.PostgresHarness(t)
			topic, queues := declare(t, u, 1)
			c := consume(t, u, queues...)
			p := newProxy(t, host(t, u))
			amqpPub, dialed := viaProxy(t, p, u, nil)
			pub := faulttest.NewFlaky(amqpPub, 0, 1) // to hold the relay's publishes back
			check := faulttest.NewChecker()
			r, _ := relaytest.Start(t, h.Store, pub, relaytest.FastConfig())

			commit(t, h, check, event(topic, "k", 0)) // its publish declares the exchange
			relaytest.Eventually(t, 30*time.Second, "the first event", func() bool { return len(c.Received()) == 1 })
			p.HoldFrom(tc.dir, tc.from)
			commit(t, h, check, event(topic, "k", 1))
			if tc.duplicates > 0 {
				relaytest.Eventually(t, 30*time.Second, "the second event in the queue", func() bool { return len(c.Received()) == 2 })
			}
			relaytest.Eventually(t, 30*time.Second, "the frames held back", func() bool { return p.Holding(tc.dir) > 0 })
			// watermill-amqp's reconnect races with a publish that overlaps
			// it (see viaProxy): the relay's next publish waits for it.
			unblock := pub.Block()
			p.Cut()
			dialed.Wait(2)
			unblock()
			relaytest.Eventually(t, time.Minute, "the second event again", func() bool { return len(c.Received()) == 2+tc.duplicates })

			report := check.Check(c.Received(), r.Stats().PossibleDuplicates)
			require.True(t, report.OK(), report.String())
			require.Equal(t, tc.duplicates, report.Duplicates)
			require.Equal(t, int64(1), r.Stats().PossibleDuplicates)
			require.Zero(t, count(t, h, "retry_count > 0"), "a broken connection uses up no attempt")
		})
	}
}

// Nothing lost holds for the queues bound when a message arrives: the
// server confirms a message that no queue is bound to receive, and drops
// it. Publish reports it accepted, so the relay marks it published. Declare
// the queues (start the consumers) before the relay publishes.
func TestUnroutableMessageIsDropped(t *testing.T) {
	t.Parallel()
	u := rabbitmq.URL(t)
	ctx := context.Background()
	topic, _ := declare(t, u, 0)
	pub, _ := newPublisher(t, u)
	dropped := message(topic, "k")
	faulttest.RequireAccepted(t, pub.Publish(ctx, []*outbox.Message{dropped}))

	cfg := outboxamqp.Config(u)
	ch, err := dial(t, u).Channel()
	require.NoError(t, err)
	queue := topic + "_late"
	_, err = ch.QueueDeclare(queue, true, false, false, false, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = ch.QueueDelete(queue, false, false, false) })
	require.NoError(t, ch.QueueBind(queue, cfg.QueueBind.GenerateRoutingKey(topic), topic, false, nil))
	c := consume(t, u, queue)
	sentinel := message(topic, "k")
	faulttest.RequireAccepted(t, pub.Publish(ctx, []*outbox.Message{sentinel}))
	relaytest.Eventually(t, 30*time.Second, "the sentinel", func() bool { return len(c.Received()) > 0 })
	require.Len(t, c.Received(), 1)
	require.Equal(t, sentinel.ID, c.Received()[0].ID, "the message published before the queue was bound is gone")
}

// A server that refuses the connection fails NewPublisher: watermill-amqp
// connects when it is built.
func TestNewPublisherRefused(t *testing.T) {
	t.Parallel()
	_, _, err := outboxamqp.NewPublisher("amqp://guest:guest@127.0.0.1:1/", nil)
	require.ErrorContains(t, err, "connection refused")
}

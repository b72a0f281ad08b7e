package outboxamqp_test

import (
	"testing"

	wamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox/broker/wmbroker"
	outboxamqp "github.com/outboxkit/outbox/contrib/amqp"
	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/internal/testenv/rabbitmq"
	"github.com/outboxkit/outbox/relay/relaytest"
)

// newPublisher returns the relay's publisher to the server at u and the
// watermill-amqp publisher under it, closed at the end of the test.
func newPublisher(t testing.TB, u string) (*wmbroker.Publisher, *wamqp.Publisher) {
	t.Helper()
	pub, ap, err := outboxamqp.NewPublisher(u, nil)
	require.NoError(t, err)
	t.Cleanup(func() { ap.Close() })
	return pub, ap
}

// The relay suite over RabbitMQ: wmbroker.New over a watermill-amqp
// publisher, each subtest on a topic of its own whose consistent-hash
// exchange spreads the keys over four queues, read back by a consumer of
// its own. Per-key order is checked on what the queues delivered: each key
// lives in one queue. Not parallel: the suite's Shutdown subtest checks for
// leaked goroutines.
func TestRelaySuite(t *testing.T) {
	u := rabbitmq.URL(t)
	relaytest.RunBroker(t, testenv.PostgresHarness, func(t *testing.T) relaytest.Broker {
		topic, queues := declare(t, u, 4)
		c := consume(t, u, queues...)
		pub, _ := newPublisher(t, u)
		return relaytest.Broker{Publisher: pub, Topic: topic, Received: c.Received}
	})
}

package outboxwatermill_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox/broker"
	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/migrations"
	"github.com/outboxkit/outbox/relay"
	"github.com/outboxkit/outbox/relay/relaytest"
	"github.com/outboxkit/outbox/store"
	"github.com/outboxkit/outbox/store/mysql"
)

// mysqlStore returns a MySQL store over a fresh, migrated table that is
// dropped at the end of the test.
func mysqlStore(t *testing.T) *mysql.Store {
	t.Helper()
	db := testenv.MySQL(t)
	table := testenv.Table("outbox")
	ctx := context.Background()
	require.NoError(t, migrations.Up(ctx, db, migrations.MySQL, table))
	t.Cleanup(func() {
		_, _ = db.ExecContext(context.Background(), "DROP TABLE IF EXISTS "+table+", "+migrations.ClaimsTable(table))
		_, _ = db.ExecContext(context.Background(), "DELETE FROM outbox_migrations WHERE table_name = ?", table)
	})
	st, err := mysql.New(db, mysql.Config{Table: table})
	require.NoError(t, err)
	return st
}

// testRelayConfig polls often and stops fast, so tests stay short.
func testRelayConfig() relay.Config {
	return relay.Config{PollInterval: 20 * time.Millisecond, ShutdownTimeout: 5 * time.Second, Retention: -1}
}

// runRelay runs a relay from st to pub until the test ends.
func runRelay(t *testing.T, st store.Store, pub broker.Publisher) *relay.Relay {
	t.Helper()
	r, _ := relaytest.Start(t, st, pub, testRelayConfig())
	return r
}

// kafkaSubscriber returns a Watermill Kafka subscriber in consumer group
// group ("" for none) that starts from the oldest offset, as a new service
// would, and unmarshals with u.
func kafkaSubscriber(t testing.TB, brokers []string, group string, u wkafka.Unmarshaler) *readySubscriber {
	t.Helper()
	cfg := wkafka.DefaultSaramaSubscriberConfig()
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Group.Heartbeat.Interval = 100 * time.Millisecond
	cfg.Consumer.Group.Rebalance.Timeout = time.Second
	cfg.Consumer.Offsets.AutoCommit.Interval = 100 * time.Millisecond
	sub, err := wkafka.NewSubscriber(wkafka.SubscriberConfig{
		Brokers: brokers, Unmarshaler: u, OverwriteSaramaConfig: cfg,
		ConsumerGroup: group, ReconnectRetrySleep: 100 * time.Millisecond,
		// For SubscribeInitialize, which the universal suite calls.
		InitializeTopicDetails: &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1},
	}, watermill.NopLogger{})
	require.NoError(t, err)
	return &readySubscriber{sub, t, brokers}
}

// readySubscriber's SubscribeInitialize returns once the new topic's
// partitions are served: a subscriber without a group fails at once on a
// partition whose leader has not taken it up yet.
type readySubscriber struct {
	*wkafka.Subscriber
	t       testing.TB
	brokers []string
}

func (s *readySubscriber) SubscribeInitialize(topic string) error {
	if err := s.Subscriber.SubscribeInitialize(topic); err != nil {
		return err
	}
	testenv.KafkaTopicReady(s.t, s.brokers, topic, 3)
	return nil
}

// receive reads n messages from msgs, acking each, or fails after timeout.
func receive(t *testing.T, msgs <-chan *message.Message, n int, timeout time.Duration) []*message.Message {
	t.Helper()
	var out []*message.Message
	deadline := time.After(timeout)
	for len(out) < n {
		select {
		case m := <-msgs:
			m.Ack()
			out = append(out, m)
		case <-deadline:
			t.Fatalf("received %d of %d messages in %v", len(out), n, timeout)
		}
	}
	return out
}

// count returns the result of a COUNT query.
func count(t *testing.T, db *sql.DB, query string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, db.QueryRowContext(context.Background(), query, args...).Scan(&n), query)
	return n
}

// eventually polls cond every 10ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	for end := time.Now().Add(timeout); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("after %v: %s", timeout, fmt.Sprintf(format, args...))
		}
	}
}

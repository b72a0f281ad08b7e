package outboxwatermill_test

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"maps"
	"strconv"
	"testing"

	"github.com/IBM/sarama"
	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"

	outboxwatermill "github.com/outboxkit/outbox/contrib/watermill"
	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/store/postgres"
)

// suitePublisher publishes each call in a transaction of its own through the
// transactional publisher, as a handler would.
//
// The suite sends payloads such as "x" that are not JSON, which the outbox
// rejects (event_data is a JSON column), so the payload travels as a JSON
// string (base64, which round-trips any bytes) and decodingUnmarshaler
// decodes it. The key is that encoded payload: the suite checks order per payload,
// and the outbox keeps order per key.
type suitePublisher struct{ st *postgres.Store }

func (p suitePublisher) Publish(topic string, msgs ...*message.Message) error {
	ctx := context.Background()
	tx, err := p.st.Pool().Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	encoded := make([]*message.Message, len(msgs))
	for i, m := range msgs {
		payload, err := json.Marshal([]byte(m.Payload))
		if err != nil {
			return err
		}
		encoded[i] = message.NewMessage(m.UUID, payload)
		maps.Copy(encoded[i].Metadata, m.Metadata)
		encoded[i].SetContext(m.Context())
	}
	pub := outboxwatermill.NewPublisher(p.st, tx,
		outboxwatermill.WithKeyFunc(func(_ string, m *message.Message) string { return string(m.Payload) }))
	if err := pub.Publish(topic, encoded...); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func (suitePublisher) Close() error { return nil }

// decodingUnmarshaler undoes suitePublisher's encoding of the payload.
type decodingUnmarshaler struct{ wkafka.DefaultMarshaler }

func (u decodingUnmarshaler) Unmarshal(km *sarama.ConsumerMessage) (*message.Message, error) {
	m, err := u.DefaultMarshaler.Unmarshal(km)
	if err != nil {
		return nil, err
	}
	var raw []byte
	if err := json.Unmarshal(m.Payload, &raw); err != nil {
		return nil, err
	}
	m.Payload = raw
	return m, nil
}

// Watermill's universal Pub/Sub suite, for the pair "transactional outbox
// publisher + relay" → "Watermill Kafka subscriber in a consumer group", on
// one table, one relay and the real Apache Kafka broker. It runs the suite's
// tests as tests.TestPubSub does, with these features:
//
//   - ConsumerGroups, Persistent: Kafka consumer groups, with offsets
//     committed on ack.
//   - GuaranteedOrder: per key (see suitePublisher), with several
//     subscribers of one group.
//   - ExactlyOnceDelivery off: delivery is at least once (the inbox gives
//     exactly-once effects, not delivery).
//   - NewSubscriberReceivesOldMessages: on for subscribers without a group,
//     off for group members, which continue from the group's offsets.
//   - ForceShort: the suite's small message counts, so that it runs in the
//     default test run.
//
// Two tests are left out. TestConcurrentSubscribeMultipleTopics publishes
// copies of the same messages, same UUIDs, to several topics; the UUID is
// the event ID, unique in the outbox table, so the second topic's write
// fails with a duplicate key, as it should: one event, one ID. TestReconnect
// needs a command that restarts the broker, which is shared by all tests
// here; internal/e2e and broker/kafka cover broker outages.
func TestPubSubSuite(t *testing.T) {
	st := testenv.PostgresStore(t, postgres.Config{})
	brokers, pub := newKafka(t)
	runRelay(t, st, pub)
	constructor := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		return suitePublisher{st}, kafkaSubscriber(t, brokers, group, decodingUnmarshaler{})
	}
	// Subscribers made by one test share its consumer group, so that the
	// suite's "multiplied" subscribers share the work.
	grouped := func(t *testing.T) (message.Publisher, message.Subscriber) { return constructor(t, groupOf(t)) }
	ungrouped := func(t *testing.T) (message.Publisher, message.Subscriber) { return constructor(t, "") }
	features := tests.Features{
		ConsumerGroups:      true,
		ExactlyOnceDelivery: false,
		GuaranteedOrder:     true,
		Persistent:          true,
		ForceShort:          true,
	}
	oldMessages := features
	oldMessages.NewSubscriberReceivesOldMessages = true
	suite := []struct {
		name        string
		test        func(*testing.T, tests.TestContext, tests.PubSubConstructor)
		constructor tests.PubSubConstructor
		features    tests.Features
	}{
		{"TestPublishSubscribe", tests.TestPublishSubscribe, grouped, features},
		{"TestConcurrentSubscribe", tests.TestConcurrentSubscribe, grouped, features},
		{"TestResendOnError", tests.TestResendOnError, grouped, features},
		{"TestNoAck", tests.TestNoAck, grouped, features},
		{"TestContinueAfterSubscribeClose", tests.TestContinueAfterSubscribeClose, grouped, features},
		{"TestConcurrentClose", tests.TestConcurrentClose, grouped, features},
		{"TestContinueAfterErrors", tests.TestContinueAfterErrors, grouped, features},
		{"TestPublishSubscribeInOrder", tests.TestPublishSubscribeInOrder, grouped, features},
		{"TestPublisherClose", tests.TestPublisherClose, grouped, features},
		{"TestTopic", tests.TestTopic, grouped, features},
		{"TestMessageCtx", tests.TestMessageCtx, grouped, features},
		{"TestSubscribeCtx", tests.TestSubscribeCtx, grouped, features},
		{"TestNewSubscriberReceivesOldMessages", tests.TestNewSubscriberReceivesOldMessages, ungrouped, oldMessages},
		{"TestConsumerGroups", func(t *testing.T, tc tests.TestContext, _ tests.PubSubConstructor) {
			tests.TestConsumerGroups(t, tc, constructor)
		}, nil, features},
	}
	for _, s := range suite {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			s.test(t, tests.TestContext{TestID: tests.NewTestID(), Features: s.features}, s.constructor)
		})
	}
}

// groupOf names a consumer group after the test.
func groupOf(t *testing.T) string {
	h := fnv.New64a()
	h.Write([]byte(t.Name()))
	return "suite-" + strconv.FormatUint(h.Sum64(), 36)
}

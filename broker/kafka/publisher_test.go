package kafka_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker"
	"github.com/outboxkit/outbox/broker/kafka"
	"github.com/outboxkit/outbox/internal/faulttest"
	"github.com/outboxkit/outbox/internal/testenv"
)

var _ broker.Publisher = (*kafka.Publisher)(nil)

// reportBound is the documented bound on a Publish call with the default
// DeliveryTimeout: 10 s plus half a second.
const reportBound = kafka.DefaultDeliveryTimeout + 500*time.Millisecond

// slack covers what a loaded machine adds to the bound: the last promises
// and the scheduler, not a network step.
const slack = 500 * time.Millisecond

func newPublisher(t *testing.T, cfg kafka.Config) *kafka.Publisher {
	t.Helper()
	p, err := kafka.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	return p
}

func message(topic, key, value string) *outbox.Message {
	id := uuid.New()
	return &outbox.Message{
		ID:    id,
		Topic: topic,
		Key:   key,
		Value: []byte(value),
		Headers: map[string]string{
			outbox.HeaderMessageUUID:   id.String(),
			outbox.HeaderCorrelationID: "corr-" + value,
			outbox.HeaderEventType:     "test.happened",
			outbox.HeaderTraceparent:   "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		},
	}
}

func publish(t *testing.T, p *kafka.Publisher, msgs ...*outbox.Message) []error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	return p.Publish(ctx, msgs)
}

func values(recs []*kgo.Record) []string {
	var vs []string
	for _, r := range recs {
		vs = append(vs, string(r.Value))
	}
	return vs
}

func requireAll(t *testing.T, errs []error, n int, target error) {
	t.Helper()
	require.Len(t, errs, n)
	for i, err := range errs {
		require.ErrorIs(t, err, target, "message %d", i)
	}
}

// The wire format, byte for byte, as watermill-kafka's DefaultMarshaler
// writes it: the UUID header first, one header per message header, the key
// (none when empty), the value unchanged. contrib/watermill reads the same
// records with a Watermill Kafka subscriber.
func TestWireFormat(t *testing.T) {
	t.Parallel()
	brokers := testenv.Kafka(t)
	topic := testenv.KafkaTopic(t, brokers, 3)
	p := newPublisher(t, kafka.Config{Brokers: brokers})

	keyed := message(topic, "order-42", `{"n":1}`)
	keyed.Headers["tenant"] = "acme"
	keyed.Headers["empty"] = ""
	unkeyed := message(topic, "", `{"n":2}`)
	faulttest.RequireAccepted(t, publish(t, p, keyed, unkeyed))

	recs := testenv.ReadKafka(t, brokers, topic)
	require.Len(t, recs, 2)
	for _, r := range recs {
		want := keyed
		if string(r.Value) == string(unkeyed.Value) {
			want = unkeyed
		}
		require.Equal(t, want.Value, r.Value)
		if want.Key == "" {
			require.Nil(t, r.Key, "no key, not an empty one")
		} else {
			require.Equal(t, want.Key, string(r.Key))
		}
		require.Equal(t, kgo.RecordHeader{Key: outbox.HeaderMessageUUID, Value: []byte(want.ID.String())}, r.Headers[0])
		got := map[string]string{}
		for _, h := range r.Headers {
			_, dup := got[h.Key]
			require.False(t, dup, "header %s once", h.Key)
			got[h.Key] = string(h.Value)
		}
		require.Equal(t, want.Headers, got)
		require.Zero(t, r.Attrs.CompressionType(), "uncompressed")
	}
}

// A message too large for the topic in the middle of a key's run fails
// permanently; the later messages of its key are skipped and not appended;
// the messages before it, and the other keys, are appended although they
// shared its record batch. The broker refuses the batch whole, so the
// publisher sends its records again one by one to find the culprit.
func TestTooLarge(t *testing.T) {
	t.Parallel()
	brokers := testenv.Kafka(t)
	big := make([]byte, 20_000)
	_, _ = rand.Read(big)
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// One partition: every message shares the big one's batch.
			topic := tc.topic(t, brokers)
			p := newPublisher(t, kafka.Config{Brokers: brokers, MaxMessageBytes: tc.clientMax})
			// A warm client: it has a producer ID and sends at once what
			// is flushed.
			faulttest.RequireAccepted(t, publish(t, p, message(topic, "w", "w0")))
			msgs := []*outbox.Message{
				message(topic, "a", "a1"),
				message(topic, "b", "b1"),
				message(topic, "a", "a2"),
				message(topic, "a", string(big)),
				message(topic, "c", "c1"),
				message(topic, "a", "a4"),
				message(topic, "b", "b2"),
				message(topic, "a", "a5"),
			}
			errs := publish(t, p, msgs...)
			require.Len(t, errs, len(msgs))
			require.ErrorIs(t, errs[3], outbox.ErrPermanent)
			require.ErrorContains(t, errs[3], "too large")
			for _, i := range []int{5, 7} {
				require.ErrorIs(t, errs[i], outbox.ErrSkipped, "message %d", i)
				require.NotErrorIs(t, errs[i], outbox.ErrPermanent, "a skipped message is not parked")
			}
			for _, i := range []int{0, 1, 2, 4, 6} {
				require.NoError(t, errs[i], "message %d", i)
			}
			for _, err := range errs {
				require.NotErrorIs(t, err, outbox.ErrUnknownOutcome, "the broker refused what it did not append")
			}
			require.Equal(t, []string{"w0", "a1", "b1", "a2", "c1", "b2"}, values(testenv.ReadKafka(t, brokers, topic)))
		})
	}
}

// refusal is where a message of 20,000 bytes is refused as too large: by
// the broker (the topic's max.message.bytes) or by the client
// (Config.MaxMessageBytes).
type refusal struct {
	name      string
	topicMax  string
	clientMax int
}

var refusals = []refusal{
	{"broker refuses", "10000", 0},
	{"client refuses", "", 10_000},
}

// topic creates a topic of one partition with the refusal's limit.
func (r refusal) topic(t *testing.T, brokers []string) string {
	t.Helper()
	configs := map[string]string{}
	if r.topicMax != "" {
		configs["max.message.bytes"] = r.topicMax
	}
	return testenv.KafkaTopicWith(t, brokers, 1, configs)
}

// A message too large for the client behind thousands of its key: the
// client refuses it before it sends anything, and the call sends none of its
// records before every one is buffered, so the ones before it are appended
// once, and the ones after it are not.
func TestTooLargeBehindThousands(t *testing.T) {
	t.Parallel()
	brokers := testenv.Kafka(t)
	topic := testenv.KafkaTopic(t, brokers, 1)
	p := newPublisher(t, kafka.Config{Brokers: brokers, MaxMessageBytes: 10_000})
	faulttest.RequireAccepted(t, publish(t, p, message(topic, "w", "w0")))
	var msgs []*outbox.Message
	var want []string
	for i := range 5000 {
		msgs = append(msgs, message(topic, "a", fmt.Sprint("a", i)))
		want = append(want, fmt.Sprint("a", i))
	}
	msgs = append(msgs, message(topic, "a", strings.Repeat("x", 20_000)), message(topic, "a", "after"))
	errs := publish(t, p, msgs...)
	require.ErrorIs(t, errs[5000], outbox.ErrPermanent)
	require.ErrorIs(t, errs[5001], outbox.ErrSkipped)
	require.Equal(t, append([]string{"w0"}, want...), values(testenv.ReadKafka(t, brokers, topic)))
}

// A compacted topic refuses a batch that holds a record without a key
// (INVALID_RECORD). The unkeyed messages fail permanently; the keyed ones
// that shared their batch are appended.
func TestInvalidRecordIsolated(t *testing.T) {
	t.Parallel()
	brokers := testenv.Kafka(t)
	topic := testenv.KafkaTopicWith(t, brokers, 1, map[string]string{"cleanup.policy": "compact"})
	p := newPublisher(t, kafka.Config{Brokers: brokers})
	msgs := []*outbox.Message{
		message(topic, "a", "a1"), message(topic, "", "u1"), message(topic, "b", "b1"),
		message(topic, "a", "a2"), message(topic, "", "u2"),
	}
	errs := publish(t, p, msgs...)
	require.Len(t, errs, len(msgs))
	for _, i := range []int{1, 4} {
		require.ErrorIs(t, errs[i], outbox.ErrPermanent, "message %d", i)
	}
	for _, i := range []int{0, 2, 3} {
		require.NoError(t, errs[i], "message %d", i)
	}
	require.Equal(t, []string{"a1", "b1", "a2"}, values(testenv.ReadKafka(t, brokers, topic)))
}

// New does not connect, so a relay started before Kafka starts. A broker
// that refuses connections is reported unreachable within the bound, and
// nothing counts as a possible duplicate: no request went out. Ping fails.
func TestBrokerRefusesConnections(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	p := newPublisher(t, kafka.Config{Brokers: []string{addr}})

	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	require.ErrorIs(t, p.Ping(ctx), outbox.ErrUnreachable)

	began := time.Now()
	errs := publish(t, p, message("t", "k", "1"), message("t", "k", "2"), message("t", "j", "3"))
	took := time.Since(began)
	t.Logf("refused connections reported after %v", took)
	require.Less(t, took, reportBound+slack)
	require.ErrorIs(t, errs[0], outbox.ErrUnreachable)
	require.ErrorIs(t, errs[1], outbox.ErrSkipped)
	require.ErrorIs(t, errs[2], outbox.ErrUnreachable)
	for _, err := range errs {
		require.NotErrorIs(t, err, outbox.ErrUnknownOutcome)
	}
}

// silentListener accepts connections and reads them, but never answers, as
// a broker behind a dropped route.
func silentListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// A broker that accepts connections and never answers is reported within
// the documented bound, also to a call that waited for the one before it.
// The client never learned a leader, so no produce request went out and
// nothing counts as a possible duplicate.
func TestSilentBrokerReport(t *testing.T) {
	t.Parallel()
	p := newPublisher(t, kafka.Config{Brokers: []string{silentListener(t)}})
	var wg sync.WaitGroup
	for call := range 2 {
		wg.Go(func() {
			began := time.Now()
			errs := publish(t, p, message("t", "k", "1"), message("t", "j", "2"))
			took := time.Since(began)
			t.Logf("call %d: silent broker reported after %v", call, took)
			assert.Less(t, took, reportBound+slack)
			for _, err := range errs {
				assert.ErrorIs(t, err, outbox.ErrUnreachable)
				assert.NotErrorIs(t, err, outbox.ErrUnknownOutcome)
			}
		})
	}
	wg.Wait()
}

func TestCanceledContext(t *testing.T) {
	t.Parallel()
	brokers := testenv.Kafka(t)
	p := newPublisher(t, kafka.Config{Brokers: brokers})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	errs := p.Publish(ctx, []*outbox.Message{message("t", "k", "v")})
	require.Len(t, errs, 1)
	require.ErrorIs(t, errs[0], context.Canceled)
	require.NotErrorIs(t, errs[0], outbox.ErrPermanent)
	require.NotErrorIs(t, errs[0], outbox.ErrUnknownOutcome)
}

func TestPublishAfterClose(t *testing.T) {
	t.Parallel()
	brokers := testenv.Kafka(t)
	p, err := kafka.New(kafka.Config{Brokers: brokers})
	require.NoError(t, err)
	require.NoError(t, p.Close())
	require.NoError(t, p.Close())
	errs := publish(t, p, message("t", "k", "v"))
	require.Len(t, errs, 1)
	require.Error(t, errs[0])
	require.NotErrorIs(t, errs[0], outbox.ErrPermanent)
	require.NotErrorIs(t, errs[0], outbox.ErrUnknownOutcome)
}

// Ping answers once a broker does.
func TestPing(t *testing.T) {
	t.Parallel()
	p := newPublisher(t, kafka.Config{Brokers: testenv.Kafka(t)})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	require.NoError(t, p.Ping(ctx))
}

// A call longer than a round runs as several rounds, in order.
func TestManyMessages(t *testing.T) {
	t.Parallel()
	brokers := testenv.Kafka(t)
	topic := testenv.KafkaTopic(t, brokers, 3)
	p := newPublisher(t, kafka.Config{Brokers: brokers})
	const n = 25_000
	msgs := make([]*outbox.Message, n)
	for i := range msgs {
		msgs[i] = message(topic, fmt.Sprint("k", i%7), fmt.Sprintf("k%d:%06d", i%7, i))
	}
	faulttest.RequireAccepted(t, publish(t, p, msgs...))
	recs := testenv.ReadKafka(t, brokers, topic)
	require.Len(t, recs, n)
	last := map[string]string{}
	for _, r := range recs {
		v := string(r.Value)
		k := v[:strings.IndexByte(v, ':')]
		require.Less(t, last[k], v, "key %s in order", k)
		last[k] = v
	}
}

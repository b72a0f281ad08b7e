package kafka_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/IBM/sarama"
	wmkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker"
	"github.com/outboxkit/outbox/broker/kafka"
	"github.com/outboxkit/outbox/broker/kafka/devkafka"
)

// reportBound is the documented worst case to report an unreachable broker
// with the default config; the relay's default lease is twice as long.
const reportBound = 15 * time.Second

var _ broker.Publisher = (*kafka.Publisher)(nil)

func startBroker(t *testing.T, cfg devkafka.Config) *devkafka.Broker {
	t.Helper()
	b, err := devkafka.New(cfg)
	require.NoError(t, err)
	t.Cleanup(b.Close)
	return b
}

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

// publishEventually retries until the publisher works again after a fault.
func publishEventually(t *testing.T, p *kafka.Publisher, m *outbox.Message) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		errs := publish(t, p, m)
		if errs == nil {
			return
		}
		require.True(t, time.Now().Before(deadline), "still failing: %v", errs[0])
		time.Sleep(100 * time.Millisecond)
	}
}

// readAll returns every record of topic, read with franz-go rather than
// sarama so that the check does not share the producer's assumptions.
func readAll(t *testing.T, addr, topic string) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	require.NoError(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	require.NoError(t, err)
	want := 0
	ends.Each(func(o kadm.ListedOffset) { want += int(o.Offset) })

	var recs []*kgo.Record
	for len(recs) < want {
		fs := cl.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "read %d of %d records", len(recs), want)
		recs = append(recs, fs.Records()...)
	}
	return recs
}

func values(recs []*kgo.Record) []string {
	var vs []string
	for _, r := range recs {
		vs = append(vs, string(r.Value))
	}
	return vs
}

func TestWatermillSubscriberReadsMessages(t *testing.T) {
	t.Parallel()
	b := startBroker(t, devkafka.Config{Partitions: 3})
	p := newPublisher(t, kafka.Config{Brokers: []string{b.Addr()}})

	const topic = "orders"
	var msgs []*outbox.Message
	for i := range 5 {
		for _, key := range []string{"a", "b", "c", "d"} {
			msgs = append(msgs, message(topic, key, fmt.Sprintf("%s%d", key, i)))
		}
	}
	msgs = append(msgs, message(topic, "", "unkeyed"))
	require.Nil(t, publish(t, p, msgs...))

	sc := wmkafka.DefaultSaramaSubscriberConfig()
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sub, err := wmkafka.NewSubscriber(wmkafka.SubscriberConfig{
		Brokers:               []string{b.Addr()},
		Unmarshaler:           wmkafka.DefaultMarshaler{},
		OverwriteSaramaConfig: sc,
		ConsumerGroup:         "test",
	}, nil)
	require.NoError(t, err)
	defer sub.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ch, err := sub.Subscribe(ctx, topic)
	require.NoError(t, err)

	byID := map[string]*outbox.Message{}
	for _, m := range msgs {
		byID[m.ID.String()] = m
	}
	partitionOf := map[string]int32{}
	order := map[string][]string{}
	for range msgs {
		var wm interface {
			Ack() bool
		}
		select {
		case got := <-ch:
			wm = got
			want, ok := byID[got.UUID]
			require.True(t, ok, "UUID %q is an event ID", got.UUID)
			require.Equal(t, want.Value, []byte(got.Payload))
			require.Equal(t, want.Headers[outbox.HeaderCorrelationID], got.Metadata.Get(outbox.HeaderCorrelationID))
			require.Equal(t, want.Headers[outbox.HeaderTraceparent], got.Metadata.Get(outbox.HeaderTraceparent))
			require.Empty(t, got.Metadata.Get(outbox.HeaderMessageUUID), "the UUID header is not metadata")
			if want.Key != "" {
				partition, ok := wmkafka.MessagePartitionFromCtx(got.Context())
				require.True(t, ok)
				if seen, ok := partitionOf[want.Key]; ok {
					require.Equal(t, seen, partition, "key %s in one partition", want.Key)
				}
				partitionOf[want.Key] = partition
				order[want.Key] = append(order[want.Key], string(want.Value))
			}
		case <-ctx.Done():
			t.Fatal("subscriber did not get every message")
		}
		wm.Ack()
	}
	for _, key := range []string{"a", "b", "c", "d"} {
		require.Equal(t, []string{key + "0", key + "1", key + "2", key + "3", key + "4"}, order[key])
	}

	// The wire format, byte for byte.
	recs := readAll(t, b.Addr(), topic)
	require.Len(t, recs, len(msgs))
	for _, r := range recs {
		count := map[string]int{}
		for _, h := range r.Headers {
			count[h.Key]++
		}
		require.Equal(t, 1, count[outbox.HeaderMessageUUID])
		require.Equal(t, 1, count[outbox.HeaderTraceparent])
		if string(r.Value) == "unkeyed" {
			require.Nil(t, r.Key)
		} else {
			require.Equal(t, string(r.Value[:1]), string(r.Key))
		}
	}
}

// A too-large message fails permanently whether the publisher or the broker
// rejects it; later messages of its key are skipped and not published, and
// the other keys go through even when they shared its batch.
func TestTooLarge(t *testing.T) {
	t.Parallel()
	big := make([]byte, 20_000)
	_, _ = rand.Read(big)
	for _, tc := range []struct {
		name      string
		brokerMax int
		clientMax int
	}{
		{"broker rejects", 10_000, 0},
		{"publisher rejects", 0, 10_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// One partition: every message shares the big one's batch.
			b := startBroker(t, devkafka.Config{Partitions: 1, MaxMessageBytes: tc.brokerMax})
			p := newPublisher(t, kafka.Config{Brokers: []string{b.Addr()}, MaxMessageBytes: tc.clientMax})

			msgs := []*outbox.Message{
				message("big", "a", "a1"),
				message("big", "b", string(big)),
				message("big", "c", "c1"),
				message("big", "b", "b2"),
				message("big", "a", "a2"),
			}
			errs := publish(t, p, msgs...)
			require.Len(t, errs, len(msgs))
			require.ErrorIs(t, errs[1], outbox.ErrPermanent)
			require.ErrorIs(t, errs[3], outbox.ErrSkipped)
			require.NotErrorIs(t, errs[3], outbox.ErrPermanent, "a skipped message is not parked")
			for _, i := range []int{0, 2, 4} {
				require.NoError(t, errs[i])
			}
			require.Equal(t, []string{"a1", "c1", "a2"}, values(readAll(t, b.Addr(), "big")))
		})
	}
}

func TestSkipsAfterFailure(t *testing.T) {
	t.Parallel()
	const partitions = 3
	b := startBroker(t, devkafka.Config{Partitions: partitions})
	p := newPublisher(t, kafka.Config{Brokers: []string{b.Addr()}})
	const topic = "skip"
	publishEventually(t, p, message(topic, "warm", "warm")) // creates the topic

	hash := sarama.NewHashPartitioner(topic)
	partitionOf := func(key string) int32 {
		part, err := hash.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(key)}, partitions)
		require.NoError(t, err)
		return part
	}
	other := "y"
	for partitionOf(other) == partitionOf("x") {
		other += "y"
	}
	// The broker rejects the next batch of key x's partition.
	b.Cluster().Fault(kfake.Fault{
		Keys:       []kmsg.Key{kmsg.Produce},
		Topic:      topic,
		Partitions: []int32{partitionOf("x")},
		Err:        kerr.InvalidRecord,
	})

	errs := publish(t, p,
		message(topic, "x", "x1"),
		message(topic, other, "o1"),
		message(topic, "x", "x2"),
		message(topic, other, "o2"),
		message(topic, "x", "x3"),
	)
	require.Len(t, errs, 5)
	require.ErrorIs(t, errs[0], outbox.ErrPermanent)
	require.ErrorIs(t, errs[2], outbox.ErrSkipped)
	require.ErrorIs(t, errs[4], outbox.ErrSkipped)
	require.NoError(t, errs[1])
	require.NoError(t, errs[3])
	require.ElementsMatch(t, []string{"warm", "o1", "o2"}, values(readAll(t, b.Addr(), topic)))
}

// A call's messages go out as one produce request, not one per message.
func TestOneRequestPerBatch(t *testing.T) {
	t.Parallel()
	b := startBroker(t, devkafka.Config{Partitions: 3})
	p := newPublisher(t, kafka.Config{Brokers: []string{b.Addr()}})
	publishEventually(t, p, message("bulk", "warm", "warm"))

	produces := b.Cluster().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Count: -1, Observe: true})
	var msgs []*outbox.Message
	for i := range 60 {
		msgs = append(msgs, message("bulk", fmt.Sprint(i%10), fmt.Sprint(i)))
	}
	require.Nil(t, publish(t, p, msgs...))
	require.Equal(t, 1, produces.Hits(), "produce requests for 60 messages on 3 partitions")
}

func requireAll(t *testing.T, errs []error, n int, target error) {
	t.Helper()
	require.Len(t, errs, n)
	for i, err := range errs {
		require.ErrorIs(t, err, target, "message %d", i)
	}
}

func TestBrokerStopped(t *testing.T) {
	t.Parallel()
	b := startBroker(t, devkafka.Config{Partitions: 3})
	p := newPublisher(t, kafka.Config{Brokers: []string{b.Addr()}})
	publishEventually(t, p, message("outage", "k", "before"))

	b.Stop()
	began := time.Now()
	errs := publish(t, p,
		message("outage", "k", "lost1"),
		message("outage", "k", "lost2"),
		message("outage", "other", "lost3"),
	)
	took := time.Since(began)
	t.Logf("stopped broker reported after %v", took)
	// The connection was open when the broker stopped: the request went
	// out and the connection died under it, so nothing tells whether the
	// batch was appended. Every message of it fails as unreachable with an
	// unknown outcome (none skipped, none permanent).
	requireAll(t, errs, 3, outbox.ErrUnreachable)
	for _, err := range errs {
		require.NotErrorIs(t, err, outbox.ErrPermanent)
	}
	require.Less(t, took, reportBound)

	// Now the publisher knows the broker is gone: nothing is sent, so the
	// later message of a key is skipped.
	errs = publish(t, p,
		message("outage", "k", "lost4"),
		message("outage", "k", "lost5"),
	)
	requireAll(t, errs, 2, outbox.ErrUnreachable)
	require.ErrorIs(t, errs[1], outbox.ErrSkipped)

	require.NoError(t, b.Restart())
	publishEventually(t, p, message("outage", "k", "after"))
	require.Equal(t, []string{"before", "after"}, values(readAll(t, b.Addr(), "outage")))
}

// TestBlackholeReport measures the time to report a broker that accepts
// connections but never answers. Run it alone with
//
//	go test -run TestBlackholeReport -v ./broker/kafka/
func TestBlackholeReport(t *testing.T) {
	t.Parallel()
	b := startBroker(t, devkafka.Config{Partitions: 3})
	p := newPublisher(t, kafka.Config{Brokers: []string{b.Addr()}})
	publishEventually(t, p, message("blackhole", "k", "before"))

	b.SetBlackhole(true)
	began := time.Now()
	errs := publish(t, p, message("blackhole", "k", "m1"), message("blackhole", "j", "m2"))
	took := time.Since(began)
	t.Logf("blackholed broker reported after %v", took)
	requireAll(t, errs, 2, outbox.ErrUnreachable)
	require.Less(t, took, 20*time.Second, "documented bound is %v", reportBound)

	b.SetBlackhole(false)
	publishEventually(t, p, message("blackhole", "k", "after"))
}

// Lost acks make the publisher resend a batch with its sequence numbers;
// the broker keeps one copy.
func TestLostAcksNoDuplicates(t *testing.T) {
	t.Parallel()
	b := startBroker(t, devkafka.Config{Partitions: 3})
	p := newPublisher(t, kafka.Config{Brokers: []string{b.Addr()}})
	publishEventually(t, p, message("acks", "warm", "warm"))

	var msgs []*outbox.Message
	for i := range 30 {
		msgs = append(msgs, message("acks", fmt.Sprint(i%5), fmt.Sprint(i)))
	}
	const window = 2 * time.Second
	b.DropProduceResponses(window)
	began := time.Now()
	errs := publish(t, p, msgs...)
	require.GreaterOrEqual(t, time.Since(began), window, "the first acks were lost")
	for i, err := range errs {
		// A failure here is allowed (the relay would retry it); a
		// duplicate on the topic is not.
		t.Logf("message %d: %v", i, err)
	}

	seen := map[string]int{}
	for _, r := range readAll(t, b.Addr(), "acks") {
		for _, h := range r.Headers {
			if h.Key == outbox.HeaderMessageUUID {
				seen[string(h.Value)]++
			}
		}
	}
	for id, n := range seen {
		require.Equal(t, 1, n, "copies of event %s", id)
	}
	for i, m := range msgs {
		if errs == nil || errs[i] == nil {
			require.Equal(t, 1, seen[m.ID.String()], "published message %d is on the topic", i)
		}
	}
}

func TestNewWithoutBroker(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	_, err = kafka.New(kafka.Config{Brokers: []string{addr}})
	require.ErrorIs(t, err, outbox.ErrUnreachable)
}

func TestCanceledContext(t *testing.T) {
	t.Parallel()
	b := startBroker(t, devkafka.Config{})
	p := newPublisher(t, kafka.Config{Brokers: []string{b.Addr()}})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	errs := p.Publish(ctx, []*outbox.Message{message("t", "k", "v")})
	require.Len(t, errs, 1)
	require.True(t, errors.Is(errs[0], context.Canceled))
	require.NotErrorIs(t, errs[0], outbox.ErrPermanent)
}

func TestPublishAfterClose(t *testing.T) {
	t.Parallel()
	b := startBroker(t, devkafka.Config{})
	p, err := kafka.New(kafka.Config{Brokers: []string{b.Addr()}})
	require.NoError(t, err)
	require.NoError(t, p.Close())
	require.NoError(t, p.Close())
	errs := publish(t, p, message("t", "k", "v"))
	require.Len(t, errs, 1)
	require.Error(t, errs[0])
	require.NotErrorIs(t, errs[0], outbox.ErrPermanent)
}

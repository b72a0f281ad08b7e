package devkafka_test

import (
	"context"
	"crypto/rand"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outboxkit/outbox/broker/kafka/devkafka"
)

func start(t *testing.T, cfg devkafka.Config) *devkafka.Broker {
	t.Helper()
	b, err := devkafka.New(cfg)
	require.NoError(t, err)
	t.Cleanup(b.Close)
	return b
}

// client is a franz-go client with short timeouts, so that a fault shows
// within a test's budget.
func client(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(addr),
		kgo.AllowAutoTopicCreation(),
		kgo.DialTimeout(time.Second),
		kgo.RequestTimeoutOverhead(time.Second),
		kgo.RetryTimeout(5 * time.Second),
	}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	return cl
}

func produce(t *testing.T, cl *kgo.Client, topic, value string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	require.NoError(t, cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte(value)}).FirstErr())
}

// consume reads n records of topic from the start.
func consume(t *testing.T, addr, topic string, n int) []string {
	t.Helper()
	cl := client(t, addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var got []string
	for len(got) < n {
		fs := cl.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "read %d of %d records", len(got), n)
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	return got
}

func TestPortReuse(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())

	for range 2 {
		b, err := devkafka.New(devkafka.Config{Port: port})
		require.NoError(t, err)
		require.Equal(t, "127.0.0.1:"+strconv.Itoa(port), b.Addr())
		produce(t, client(t, b.Addr()), "reuse", "x")
		b.Close()
	}
}

func TestDropProduceResponses(t *testing.T) {
	t.Parallel()
	b := start(t, devkafka.Config{Partitions: 1})
	cl := client(t, b.Addr(), kgo.ProduceRequestTimeout(500*time.Millisecond))
	produce(t, cl, "drop", "warm-up")

	const window = time.Second
	b.DropProduceResponses(window)
	began := time.Now()
	produce(t, cl, "drop", "once")
	require.GreaterOrEqual(t, time.Since(began), window, "no produce response within the window")
	// franz-go's idempotent producer resent the record with its sequence
	// number, so the broker kept one copy.
	require.Equal(t, []string{"warm-up", "once"}, consume(t, b.Addr(), "drop", 2))
}

func TestConfig(t *testing.T) {
	t.Parallel()
	_, err := devkafka.New(devkafka.Config{Partitions: -1})
	require.Error(t, err)

	b := start(t, devkafka.Config{MaxMessageBytes: 1000})
	cl := client(t, b.Addr())
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	big := make([]byte, 2000)
	_, _ = rand.Read(big) // incompressible, as franz-go compresses batches
	err = cl.ProduceSync(ctx, &kgo.Record{Topic: "big", Value: big}).FirstErr()
	require.ErrorContains(t, err, "MESSAGE_TOO_LARGE")
}

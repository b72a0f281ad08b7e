package kafka

import (
	"fmt"
	"hash/fnv"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestClientOptions pins every client setting the package doc's promises
// rest on.
func TestClientOptions(t *testing.T) {
	t.Parallel()
	p, err := New(Config{Brokers: []string{"127.0.0.1:9092"}})
	require.NoError(t, err)
	defer p.Close()
	opt := func(o any) any { return p.cl.OptValue(o) }

	require.Equal(t, "outbox", opt(kgo.ClientID))
	require.Equal(t, kgo.AllISRAcks(), opt(kgo.RequiredAcks))
	require.Equal(t, false, opt(kgo.DisableIdempotentWrite))
	require.Equal(t, true, opt(kgo.AllowIdempotentProduceCancellation))
	require.Equal(t, 10*time.Second, opt(kgo.RecordDeliveryTimeout))
	require.Equal(t, 2500*time.Millisecond, opt(kgo.ProduceRequestTimeout))
	require.Equal(t, 2500*time.Millisecond, opt(kgo.DialTimeout))
	require.Equal(t, 2500*time.Millisecond, opt(kgo.RequestTimeoutOverhead))
	require.Equal(t, time.Duration(0), opt(kgo.ProducerLinger))
	require.Equal(t, true, opt(kgo.ManualFlushing))
	require.Equal(t, int64(2*maxRound), opt(kgo.MaxBufferedRecords))
	require.Equal(t, int32(1_048_588), opt(kgo.ProducerBatchMaxBytes))
	require.Equal(t, []kgo.CompressionCodec{kgo.NoCompression()}, opt(kgo.ProducerBatchCompression))
	require.Equal(t, true, opt(kgo.AllowAutoTopicCreation))
	require.Equal(t, int64(4), opt(kgo.UnknownTopicRetries), "kgo's default")
	require.Equal(t, int64(math.MaxInt64), opt(kgo.RecordRetries), "unlimited: DeliveryTimeout bounds a record")
}

func TestClientOptionsFollowDeliveryTimeout(t *testing.T) {
	t.Parallel()
	p, err := New(Config{Brokers: []string{"127.0.0.1:9092"}, DeliveryTimeout: 40 * time.Second, MaxMessageBytes: 500_000})
	require.NoError(t, err)
	defer p.Close()
	require.Equal(t, 40*time.Second, p.cl.OptValue(kgo.RecordDeliveryTimeout))
	require.Equal(t, 10*time.Second, p.cl.OptValue(kgo.ProduceRequestTimeout))
	require.Equal(t, 3*time.Second, p.cl.OptValue(kgo.DialTimeout), "capped")
	require.Equal(t, int32(500_000), p.cl.OptValue(kgo.ProducerBatchMaxBytes))
	require.Equal(t, false, p.cl.OptValue(kgo.DisableIdempotentWrite), "overrides never touch safety")
}

// The client's partitioner places a key as sarama's hash partitioner does:
// int32(FNV-1a(key)) modulo the partition count, negated when negative.
// Placement over a real topic is checked against sarama itself in
// contrib/watermill.
func TestPartitionerHashesLikeSarama(t *testing.T) {
	t.Parallel()
	p, err := New(Config{Brokers: []string{"127.0.0.1:9092"}})
	require.NoError(t, err)
	defer p.Close()
	tp := p.cl.OptValue(kgo.RecordPartitioner).(kgo.Partitioner).ForTopic("t")
	for i := range 1000 {
		key := fmt.Appendf(nil, "key-%d", i)
		h := fnv.New32a()
		h.Write(key)
		want := int32(h.Sum32()) % 12
		if want < 0 {
			want = -want
		}
		rec := &kgo.Record{Key: key}
		require.True(t, tp.RequiresConsistency(rec))
		require.Equal(t, int(want), tp.Partition(rec, 12), "key %s", key)
	}
}

// In transactional mode the client has a transactional ID and the
// transaction timeout; everything else is as in the default mode.
func TestClientOptionsTransactional(t *testing.T) {
	t.Parallel()
	p, err := New(Config{Brokers: []string{"127.0.0.1:9092"}, Transactional: true})
	require.NoError(t, err)
	defer p.Close()
	id := p.cl.OptValue(kgo.TransactionalID).(string)
	require.Regexp(t, `^outbox-[0-9a-f]{8}$`, id)
	require.Equal(t, 15*time.Second, p.cl.OptValue(kgo.TransactionTimeout))
	require.Equal(t, DefaultProgressTopic, p.cfg.ProgressTopic)
	require.Equal(t, kgo.AllISRAcks(), p.cl.OptValue(kgo.RequiredAcks))
	require.Equal(t, true, p.cl.OptValue(kgo.ManualFlushing))

	p2, err := New(Config{Brokers: []string{"127.0.0.1:9092"}, Transactional: true, TransactionalID: "relay-0", DeliveryTimeout: 2 * time.Second})
	require.NoError(t, err)
	defer p2.Close()
	require.Equal(t, "relay-0", p2.cl.OptValue(kgo.TransactionalID))
	require.Equal(t, 3*time.Second, p2.cl.OptValue(kgo.TransactionTimeout))
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]Config{
		"Brokers":            {},
		"DeliveryTimeout":    {Brokers: []string{"x:1"}, DeliveryTimeout: -time.Second},
		"MaxMessageBytes":    {Brokers: []string{"x:1"}, MaxMessageBytes: 100},
		"Transactional":      {Brokers: []string{"x:1"}, TransactionalID: "a"},
		"ProgressTopic":      {Brokers: []string{"x:1"}, Transactional: true, ProgressTopic: "no spaces"},
		"TransactionTimeout": {Brokers: []string{"x:1"}, Transactional: true, TransactionTimeout: 5 * time.Second},
	} {
		_, err := New(cfg)
		require.ErrorContains(t, err, "Config."+name)
	}
}

package kafka_test

import (
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox/broker/kafka"
)

// TestSaramaConfig pins every knob the package doc's promises rest on.
func TestSaramaConfig(t *testing.T) {
	t.Parallel()
	sc, err := kafka.NewSaramaConfig(kafka.Config{Brokers: []string{"127.0.0.1:9092"}})
	require.NoError(t, err)

	require.Equal(t, "outbox", sc.ClientID)
	require.Equal(t, sarama.V2_8_0_0, sc.Version)
	require.False(t, sc.ApiVersionsRequest)

	require.True(t, sc.Producer.Idempotent)
	require.Equal(t, sarama.WaitForAll, sc.Producer.RequiredAcks)
	require.Equal(t, 1, sc.Net.MaxOpenRequests)
	require.Equal(t, 3*time.Second, sc.Net.DialTimeout)
	require.Equal(t, 3*time.Second, sc.Net.ReadTimeout)
	require.Equal(t, 3*time.Second, sc.Net.WriteTimeout)
	require.Equal(t, 2*time.Second, sc.Producer.Timeout)
	require.Equal(t, 1, sc.Producer.Retry.Max)
	require.Equal(t, 250*time.Millisecond, sc.Producer.Retry.Backoff)
	require.Equal(t, 1, sc.Metadata.Retry.Max)
	require.Equal(t, 250*time.Millisecond, sc.Metadata.Retry.Backoff)
	require.Equal(t, 3*time.Second, sc.Metadata.Timeout)
	require.Equal(t, 1_048_588, sc.Producer.MaxMessageBytes)
	require.Equal(t, 5*time.Millisecond, sc.Producer.Flush.Frequency)
	require.Equal(t, sarama.CompressionNone, sc.Producer.Compression)
	require.True(t, sc.Producer.Return.Successes)
	require.True(t, sc.Producer.Return.Errors)

	// The partitioner is sarama's hash partitioner: same key, same
	// partition, as watermill-kafka's default.
	p := sc.Producer.Partitioner("t")
	require.True(t, p.RequiresConsistency())
	want, err := sarama.NewHashPartitioner("t").Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder("key")}, 12)
	require.NoError(t, err)
	for range 5 {
		got, err := p.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder("key")}, 12)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
}

func TestSaramaConfigOverrides(t *testing.T) {
	t.Parallel()
	sc, err := kafka.NewSaramaConfig(kafka.Config{
		Brokers: []string{"127.0.0.1:9092"}, ClientID: "relay-7",
		NetTimeout: 6 * time.Second, MaxMessageBytes: 500_000,
	})
	require.NoError(t, err)
	require.Equal(t, "relay-7", sc.ClientID)
	require.Equal(t, 6*time.Second, sc.Net.ReadTimeout)
	require.Equal(t, 4*time.Second, sc.Producer.Timeout)
	require.Equal(t, 500_000, sc.Producer.MaxMessageBytes)
	require.True(t, sc.Producer.Idempotent, "overrides never touch safety")
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]kafka.Config{
		"Brokers":         {},
		"NetTimeout":      {Brokers: []string{"x:1"}, NetTimeout: -time.Second},
		"MaxMessageBytes": {Brokers: []string{"x:1"}, MaxMessageBytes: -1},
	} {
		_, err := kafka.NewSaramaConfig(cfg)
		require.ErrorContains(t, err, "Config."+name)
		_, err = kafka.New(cfg)
		require.ErrorContains(t, err, "Config."+name)
	}
}

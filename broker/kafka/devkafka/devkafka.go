// Package devkafka runs a single-node Kafka-protocol broker in process, for
// the demo and local development (`go run ./cmd/devkafka`), and for the one fault
// tests cannot inject into Apache Kafka: [Broker.DropProduceResponses]
// appends produce requests to the log but throws their responses away, as
// when acks are lost. It is kfake (franz-go's fake cluster) behind a TCP
// listener that this package owns. Clients speak the real wire protocol over
// real TCP on 127.0.0.1; nothing is mocked on their side. The data lives in
// memory only.
package devkafka

import (
	"cmp"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// DefaultPartitions is the partition count of auto-created topics when
// [Config.Partitions] is zero.
const DefaultPartitions = 3

// Config configures [New]. The zero value is a broker on a random port.
type Config struct {
	// Port is the TCP port on 127.0.0.1. Defaults to 0, a random free port.
	Port int
	// Partitions is the partition count of topics created on first use.
	// Defaults to DefaultPartitions.
	Partitions int
	// MaxMessageBytes is the broker's message.max.bytes: produce batches
	// larger than this are rejected with MESSAGE_TOO_LARGE. Defaults to
	// Kafka's default, 1048588.
	MaxMessageBytes int
}

// Broker is a running development broker. Its methods are safe for
// concurrent use.
type Broker struct {
	cluster *kfake.Cluster
	front   *front
}

// New starts a broker listening on 127.0.0.1. Close stops it.
func New(cfg Config) (*Broker, error) {
	if cfg.Port < 0 || cfg.Partitions < 0 || cfg.MaxMessageBytes < 0 {
		return nil, fmt.Errorf("devkafka: negative Port, Partitions or MaxMessageBytes")
	}
	f := &front{}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(cfg.Port),
		kfake.ListenFn(f.listen),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(cmp.Or(cfg.Partitions, DefaultPartitions)),
	}
	if cfg.MaxMessageBytes > 0 {
		opts = append(opts, kfake.BrokerConfigs(map[string]string{
			"message.max.bytes": strconv.Itoa(cfg.MaxMessageBytes),
		}))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("devkafka: %w", err)
	}
	return &Broker{cluster: c, front: f}, nil
}

// Addr returns the broker's host:port.
func (b *Broker) Addr() string { return b.front.Addr().String() }

// DropProduceResponses throws away the responses to produce requests for d
// from now: the records are appended, the producer never hears so and times
// out. Other responses still flow.
func (b *Broker) DropProduceResponses(d time.Duration) { b.front.dropProduceUntil(time.Now().Add(d)) }

// Close stops the broker for good and drops its data.
func (b *Broker) Close() {
	b.cluster.Close()
	b.front.Close()
}

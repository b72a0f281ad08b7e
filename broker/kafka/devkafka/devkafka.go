// Package devkafka runs a single-node Kafka-protocol broker in process, for
// tests, demos and local development. It is kfake (franz-go's fake cluster)
// behind a TCP front that this package owns, so that the broker can be stopped
// and restarted on the same port with its data kept, and so that network
// faults can be injected below the Kafka protocol:
//
//   - [Broker.Stop] and [Broker.Restart]: an outage. The listener closes and
//     every connection is cut; clients get connection refused until Restart.
//   - [Broker.SetBlackhole]: connections are accepted (and kept) but no
//     request is answered, as behind a dropped route.
//   - [Broker.DropProduceResponses]: produce requests are appended to the log
//     but their responses are thrown away, as when acks are lost.
//
// Clients speak the real wire protocol over real TCP on 127.0.0.1; nothing is
// mocked on their side. The data lives in memory only.
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
	// Port is the TCP port on 127.0.0.1. Defaults to 0, a random free port;
	// Restart reuses the port first chosen.
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
	f := &front{wake: make(chan struct{}), conns: map[*conn]struct{}{}}
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

// Addr returns the broker's host:port, also while it is stopped.
func (b *Broker) Addr() string { return b.front.Addr().String() }

// Cluster returns the kfake cluster behind the front, for the faults kfake
// injects itself (kfake.Fault, Control).
func (b *Broker) Cluster() *kfake.Cluster { return b.cluster }

// Stop closes the listener and cuts every connection; the data stays. Until
// Restart, clients get connection refused.
func (b *Broker) Stop() { b.front.stop() }

// Restart listens again on the same port after Stop. It is a no-op on a
// running broker.
func (b *Broker) Restart() error { return b.front.restart() }

// SetBlackhole turns the blackhole on or off. While on, connections are
// accepted but requests are neither processed nor answered. Turning it off
// cuts the connections that were open, since their clients have given up on
// them, and the broker answers again.
func (b *Broker) SetBlackhole(on bool) { b.front.setBlackhole(on) }

// DropProduceResponses throws away the responses to produce requests for d
// from now: the records are appended, the producer never hears so and times
// out. Other responses still flow.
func (b *Broker) DropProduceResponses(d time.Duration) { b.front.dropProduceUntil(time.Now().Add(d)) }

// Close stops the broker for good and drops its data.
func (b *Broker) Close() {
	b.cluster.Close()
	b.front.Close()
}

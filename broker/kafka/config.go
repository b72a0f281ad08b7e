package kafka

import (
	"cmp"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
)

// Defaults of [Config].
const (
	DefaultClientID   = "outbox"
	DefaultNetTimeout = 3 * time.Second
	// DefaultMaxMessageBytes is Kafka's default message.max.bytes, which
	// bounds a record batch: every event within the outbox's default limit
	// (outbox.DefaultMaxRecordBytes) fits with the relay's headers.
	DefaultMaxMessageBytes = 1_048_588
)

// The knobs below are fixed: they are what makes the producer safe (no
// duplicate on a lost ack, no reordering on a retry) and what bounds the time
// to report an unreachable broker (see the package doc).
const (
	// retryMax is how often the publisher resends a record batch after a
	// failed attempt. A resend keeps the batch's sequence numbers, so the
	// broker drops what it already has; one resend covers a lost ack
	// without stretching an outage report.
	retryMax     = 1
	retryBackoff = 250 * time.Millisecond
	// The metadata refresh after a failed request may retry once, but
	// Metadata.Timeout (NetTimeout) cuts it after one network timeout.
	metadataRetryMax     = 1
	metadataRetryBackoff = 250 * time.Millisecond
	// flushFrequency matters only to a sarama AsyncProducer built from
	// [NewSaramaConfig] (watermill-kafka's publisher, say): a batch stays
	// open 5 ms after its first message. [Publisher] does not wait: it
	// sends each call's messages at once.
	flushFrequency = 5 * time.Millisecond
)

// kafkaVersion is the protocol version the producer speaks. Idempotence
// needs 0.11; the producer uses the request versions of Kafka 2.8, so
// brokers from 2.8 on are supported.
var kafkaVersion = sarama.V2_8_0_0

// Config configures [New]. Only Brokers is required; the zero value of every
// other field means its default.
type Config struct {
	// Brokers lists the seed brokers as host:port.
	Brokers []string
	// ClientID names the producer in broker logs and quotas. Defaults to
	// DefaultClientID.
	ClientID string
	// NetTimeout bounds dialing and every request's write and response
	// read. The broker's produce timeout (how long it waits for the in-sync
	// replicas) is two thirds of it, so that the broker answers before the
	// client gives up. The time to report an unreachable broker grows with
	// it (see the package doc). Defaults to DefaultNetTimeout.
	NetTimeout time.Duration
	// MaxMessageBytes is the largest message the publisher sends, and the
	// largest record batch it builds. A larger message fails permanently
	// without being sent. Keep it at or below the broker's and the topics'
	// message.max.bytes. Defaults to DefaultMaxMessageBytes.
	MaxMessageBytes int
}

func (c Config) withDefaults() Config {
	c.ClientID = cmp.Or(c.ClientID, DefaultClientID)
	c.NetTimeout = cmp.Or(c.NetTimeout, DefaultNetTimeout)
	c.MaxMessageBytes = cmp.Or(c.MaxMessageBytes, DefaultMaxMessageBytes)
	return c
}

func (c Config) validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("kafka: Config.Brokers is empty")
	case c.NetTimeout < 0:
		return fmt.Errorf("kafka: Config.NetTimeout %v is negative", c.NetTimeout)
	case c.MaxMessageBytes < 0 || c.MaxMessageBytes >= int(sarama.MaxRequestSize):
		return fmt.Errorf("kafka: Config.MaxMessageBytes %d is out of range", c.MaxMessageBytes)
	}
	return nil
}

// NewSaramaConfig returns the sarama configuration that [New] uses for cfg:
// an idempotent producer with acks from all in-sync replicas, one request in
// flight per connection, sarama's hash partitioner on the key (the
// partitioner watermill-kafka uses), bounded timeouts and retries, and
// per-message successes and errors. [Publisher] builds its produce requests
// itself on a sarama Client with this configuration; the configuration is
// also safe for a sarama producer of your own.
func NewSaramaConfig(cfg Config) (*sarama.Config, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()

	sc := sarama.NewConfig()
	sc.ClientID = cfg.ClientID
	sc.Version = kafkaVersion

	// Without the ApiVersions handshake a new connection costs no extra
	// read timeout when the broker does not answer (sarama even tries it
	// twice); the request versions come from Version instead.
	sc.ApiVersionsRequest = false
	sc.Net.MaxOpenRequests = 1
	sc.Net.DialTimeout = cfg.NetTimeout
	sc.Net.ReadTimeout = cfg.NetTimeout
	sc.Net.WriteTimeout = cfg.NetTimeout

	sc.Metadata.Retry.Max = metadataRetryMax
	sc.Metadata.Retry.Backoff = metadataRetryBackoff
	sc.Metadata.Timeout = cfg.NetTimeout

	sc.Producer.Idempotent = true
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Timeout = cfg.NetTimeout * 2 / 3
	sc.Producer.Retry.Max = retryMax
	sc.Producer.Retry.Backoff = retryBackoff
	sc.Producer.Partitioner = sarama.NewHashPartitioner
	sc.Producer.MaxMessageBytes = cfg.MaxMessageBytes
	sc.Producer.Flush.Frequency = flushFrequency
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true

	if err := sc.Validate(); err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	return sc, nil
}

package kafka

import (
	"cmp"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outboxkit/outbox"
)

// Defaults of [Config].
const (
	DefaultClientID = "outbox"
	// DefaultDeliveryTimeout leaves the relay's default publish deadline
	// (three quarters of its 30 s lease) more than half its time.
	DefaultDeliveryTimeout = 10 * time.Second
	// DefaultMaxMessageBytes is Kafka's default message.max.bytes, which
	// bounds a record batch: every event within the outbox's default limit
	// (outbox.DefaultMaxRecordBytes) fits with the relay's headers.
	DefaultMaxMessageBytes = 1_048_588
	// DefaultProgressTopic is the topic of the progress records in
	// transactional mode.
	DefaultProgressTopic = "outbox-progress"
)

// Limits of the producer that [Config] does not expose.
const (
	// maxNetTimeout bounds dialing and the time a request may take beyond
	// its own timeout; a quarter of DeliveryTimeout when that is shorter.
	maxNetTimeout = 3 * time.Second
	// abortGrace is how long Publish waits past its deadline for the
	// client to fail what is left before it abandons it (see Publish).
	abortGrace = 500 * time.Millisecond
	// maxRound is the most records one round produces; a longer call
	// takes several rounds, one after the other.
	maxRound = 10_000
	// metadataMinAge lets a metadata refresh follow a leader change fast.
	metadataMinAge = 250 * time.Millisecond
	// progressRetention is the retention of a progress topic the
	// publisher creates.
	progressRetention = 7 * 24 * time.Hour
	// clockSkew is how far the brokers' clock may be behind the
	// database's: a look-up reads the progress from this long before the
	// oldest event's creation.
	clockSkew = time.Minute
)

// Config configures [New]. Only Brokers is required; the zero value of every
// other field means its default.
type Config struct {
	// Brokers lists the seed brokers as host:port.
	Brokers []string
	// ClientID names the producer in broker logs and quotas. Defaults to
	// DefaultClientID.
	ClientID string
	// DeliveryTimeout bounds a Publish call: a message the broker has not
	// acknowledged by then fails as unreachable (see the package doc).
	// Keep it below the relay's publish deadline, three quarters of
	// relay.Config.Lease. Defaults to DefaultDeliveryTimeout.
	DeliveryTimeout time.Duration
	// MaxMessageBytes is the largest record batch the publisher builds,
	// and so the largest message it sends. Keep it at or below the
	// broker's message.max.bytes and the topics' max.message.bytes.
	// Defaults to DefaultMaxMessageBytes.
	MaxMessageBytes int

	// Transactional turns on effectively-once publishing
	// (docs/transactions.md): each Publish call is a Kafka transaction
	// that also appends a progress record naming its events to
	// ProgressTopic, and a message with outbox.Message.Reclaimed set is
	// looked up there, with read_committed, before it is produced again.
	// Consumers see each event once if they read with
	// isolation.level=read_committed.
	Transactional bool
	// TransactionalID is the producer's transactional ID in transactional
	// mode. Give each running relay its own, and the same one again when
	// it restarts (a pod name, say): a publisher that starts with the ID
	// of one that crashed aborts that one's open transaction at once.
	// Two running publishers with one ID fence each other's transactions.
	// Defaults to ClientID, a dash and a random suffix.
	TransactionalID string
	// ProgressTopic is the topic of the progress records in
	// transactional mode. It must have one partition; the publisher
	// creates it if it is missing, with a retention of 7 days and the
	// brokers' append time as record time. Defaults to
	// DefaultProgressTopic.
	ProgressTopic string
	// TransactionTimeout is how long the transaction coordinator lets a
	// transaction stay open before it aborts it, and so how long a
	// crashed relay's open transaction can hold back read_committed
	// consumers (plus the brokers'
	// transaction.abort.timed.out.transaction.cleanup.interval.ms, 10 s by
	// default) unless a publisher with its TransactionalID starts. It
	// must exceed DeliveryTimeout. Defaults to one and a half
	// DeliveryTimeout.
	TransactionTimeout time.Duration
}

func (c Config) withDefaults() Config {
	c.ClientID = cmp.Or(c.ClientID, DefaultClientID)
	c.DeliveryTimeout = cmp.Or(c.DeliveryTimeout, DefaultDeliveryTimeout)
	c.MaxMessageBytes = cmp.Or(c.MaxMessageBytes, DefaultMaxMessageBytes)
	if c.Transactional {
		c.TransactionalID = cmp.Or(c.TransactionalID, c.ClientID+"-"+uuid.NewString()[:8])
		c.ProgressTopic = cmp.Or(c.ProgressTopic, DefaultProgressTopic)
		c.TransactionTimeout = cmp.Or(c.TransactionTimeout, c.DeliveryTimeout*3/2)
	}
	return c
}

func (c Config) validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("kafka: Config.Brokers is empty")
	case c.DeliveryTimeout < 0:
		return fmt.Errorf("kafka: Config.DeliveryTimeout %v is negative", c.DeliveryTimeout)
	case c.MaxMessageBytes != 0 && (c.MaxMessageBytes < 512 || c.MaxMessageBytes > 1<<30):
		return fmt.Errorf("kafka: Config.MaxMessageBytes %d is outside [512, 1<<30]", c.MaxMessageBytes)
	case !c.Transactional && (c.TransactionalID != "" || c.ProgressTopic != "" || c.TransactionTimeout != 0):
		return errors.New("kafka: Config.TransactionalID, ProgressTopic and TransactionTimeout need Config.Transactional")
	case c.ProgressTopic != "" && !outbox.ValidTopic(c.ProgressTopic):
		return fmt.Errorf("kafka: Config.ProgressTopic %q is not a valid topic name", c.ProgressTopic)
	case c.Transactional && c.TransactionTimeout != 0 && c.TransactionTimeout <= cmp.Or(c.DeliveryTimeout, DefaultDeliveryTimeout):
		return fmt.Errorf("kafka: Config.TransactionTimeout %v must exceed DeliveryTimeout", c.TransactionTimeout)
	}
	return nil
}

// options returns the client options of a publisher with cfg (defaults
// applied). docs/kafka.md says why each one is set.
func options(cfg Config, hooks kgo.Hook) []kgo.Opt {
	netTimeout := min(maxNetTimeout, cfg.DeliveryTimeout/4)
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID(cfg.ClientID),
		kgo.WithHooks(hooks),
		kgo.DialTimeout(netTimeout),
		kgo.RequestTimeoutOverhead(netTimeout),
		kgo.RetryTimeout(cfg.DeliveryTimeout),
		kgo.MetadataMinAge(metadataMinAge),
		kgo.AllowAutoTopicCreation(),

		kgo.RequiredAcks(kgo.AllISRAcks()), // idempotent writes need it; kgo's default
		kgo.RecordDeliveryTimeout(cfg.DeliveryTimeout),
		kgo.ProduceRequestTimeout(cfg.DeliveryTimeout / 4),
		kgo.ProducerLinger(0),
		kgo.ManualFlushing(),
		kgo.MaxBufferedRecords(2 * maxRound),
		kgo.ProducerBatchMaxBytes(int32(cfg.MaxMessageBytes)),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(kgo.SaramaCompatHasher(fnv32a))),
	}
	if cfg.Transactional {
		// A transaction whose records could not all be failed in time is
		// not committed: a new client's producer ID aborts it.
		opts = append(opts,
			kgo.TransactionalID(cfg.TransactionalID),
			kgo.TransactionTimeout(cfg.TransactionTimeout),
		)
	} else {
		opts = append(opts, kgo.AllowIdempotentProduceCancellation())
	}
	return opts
}

// fnv32a is the hash of sarama's default partitioner, which watermill-kafka
// uses: with kgo.SaramaCompatHasher, a key lands in the partition sarama
// picks for it.
func fnv32a(b []byte) uint32 {
	h := fnv.New32a()
	h.Write(b)
	return h.Sum32()
}

package testenv

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/internal/faulttest"
)

// ReadKafka returns every record of topic, from its start to its end offsets
// at the time of the call, in order within each partition. It reads with its
// own client, so that a check does not share the producer's assumptions.
func ReadKafka(t testing.TB, brokers []string, topic string) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatalf("end offsets of %s: %v", topic, err)
	}
	want := 0
	ends.Each(func(o kadm.ListedOffset) { want += int(o.Offset) })
	var recs []*kgo.Record
	for len(recs) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records of %s", len(recs), want, topic)
		}
		recs = append(recs, fs.Records()...)
	}
	return recs
}

// KafkaConsumer reads a topic from its start, for as long as the test runs,
// and keeps what arrived in delivery order (per partition, so per key).
type KafkaConsumer struct {
	mu       sync.Mutex
	received []faulttest.Received
}

// ConsumeKafka starts a consumer of topic on brokers; it stops at the end of
// the test.
func ConsumeKafka(t testing.TB, brokers []string, topic string) *KafkaConsumer {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	kc := &KafkaConsumer{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
				kc.mu.Lock()
				kc.received = append(kc.received, Received(r))
				kc.mu.Unlock()
			})
		}
	}()
	t.Cleanup(func() { cancel(); <-done; cl.Close() })
	return kc
}

// Received returns the messages received so far.
func (kc *KafkaConsumer) Received() []faulttest.Received {
	kc.mu.Lock()
	defer kc.mu.Unlock()
	return append([]faulttest.Received(nil), kc.received...)
}

// WaitAll waits until every event committed in c was received. Duplicates
// may arrive later: a check that counts them all reads the topic with
// KafkaReceived once no relay can publish any more (stopped, or idle with
// nothing pending).
func (kc *KafkaConsumer) WaitAll(t testing.TB, c *faulttest.Checker, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for c.Missing(kc.Received()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events missing after %v", c.Missing(kc.Received()), c.Len(), timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// KafkaReceived returns what is on topic now (ReadKafka), as the checker
// reads it.
func KafkaReceived(t testing.TB, brokers []string, topic string) []faulttest.Received {
	t.Helper()
	recs := ReadKafka(t, brokers, topic)
	out := make([]faulttest.Received, len(recs))
	for i, r := range recs {
		out[i] = Received(r)
	}
	return out
}

// Received reads a record as the checker does: its event ID from the
// HeaderMessageUUID header, its key from the Kafka key.
func Received(r *kgo.Record) faulttest.Received {
	var id uuid.UUID
	for _, h := range r.Headers {
		if h.Key == outbox.HeaderMessageUUID {
			id, _ = uuid.Parse(string(h.Value))
		}
	}
	return faulttest.Received{ID: id, Key: string(r.Key)}
}

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
// at the time of the call, in order within each partition, the records of
// aborted transactions included. It reads with its own client, so that a
// check does not share the producer's assumptions.
func ReadKafka(t testing.TB, brokers []string, topic string) []*kgo.Record {
	t.Helper()
	return readKafka(t, brokers, topic, false)
}

// ReadKafkaCommitted returns the records of topic that a read_committed
// consumer sees, in order within each partition, once no transaction on the
// topic is open: it first waits, up to two minutes, until each partition's
// last stable offset is its end (the coordinator aborts a crashed
// producer's transaction after its timeout).
func ReadKafkaCommitted(t testing.TB, brokers []string, topic string) []*kgo.Record {
	t.Helper()
	return readKafka(t, brokers, topic, true)
}

func readKafka(t testing.TB, brokers []string, topic string, committed bool) []*kgo.Record {
	t.Helper()
	isolation := kgo.ReadUncommitted()
	if committed {
		isolation = kgo.ReadCommitted()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(isolation), kgo.KeepControlRecords())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var starts, ends kadm.ListedOffsets
	for {
		var stable kadm.ListedOffsets
		starts, err = adm.ListStartOffsets(ctx, topic)
		if err == nil {
			err = starts.Error()
		}
		if err == nil {
			ends, err = adm.ListEndOffsets(ctx, topic)
		}
		if err == nil {
			err = ends.Error()
		}
		if err == nil && committed {
			stable, err = adm.ListCommittedOffsets(ctx, topic)
			if err == nil {
				err = stable.Error()
			}
		}
		open := false
		if err == nil && committed {
			ends.Each(func(o kadm.ListedOffset) {
				s, _ := stable.Lookup(topic, o.Partition)
				open = open || s.Offset != o.Offset
			})
		}
		if err == nil && !open {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("offsets of %s: transactions open or %v", topic, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Each partition ends with a record that the consumer is handed: a
	// data record, or the control record that ends a transaction.
	left := map[int32]int64{} // the last offset of each partition not read yet
	ends.Each(func(o kadm.ListedOffset) {
		if s, _ := starts.Lookup(topic, o.Partition); s.Offset < o.Offset {
			left[o.Partition] = o.Offset - 1
		}
	})
	var recs []*kgo.Record
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %s: %d partitions not read to their end", topic, len(left))
		}
		fs.EachRecord(func(r *kgo.Record) {
			last, ok := left[r.Partition]
			if !ok || r.Offset > last {
				return // appended after the call
			}
			if !r.Attrs.IsControl() {
				recs = append(recs, r)
			}
			if r.Offset == last {
				delete(left, r.Partition)
			}
		})
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
	return consumeKafka(t, brokers, topic)
}

// ConsumeKafkaCommitted is ConsumeKafka with isolation.level=read_committed:
// it sees the records of committed transactions only.
func ConsumeKafkaCommitted(t testing.TB, brokers []string, topic string) *KafkaConsumer {
	t.Helper()
	return consumeKafka(t, brokers, topic, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
}

func consumeKafka(t testing.TB, brokers []string, topic string, opts ...kgo.Opt) *KafkaConsumer {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.AllowAutoTopicCreation()}, opts...)...)
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

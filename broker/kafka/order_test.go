package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker/kafka"
	"github.com/outboxkit/outbox/broker/kafka/devkafka"
)

// callHeader tags a message with the call that published it, so that a
// record on the topic tells which attempt appended it.
const callHeader = "test_call"

// event is one message of a key, published again after a failure as a relay
// would, with the same ID and value.
type event struct {
	id  uuid.UUID
	key string
	seq int
}

func (e event) message(topic, call string) *outbox.Message {
	return &outbox.Message{
		ID: e.id, Topic: topic, Key: e.key, Value: []byte(e.key + ":" + strconv.Itoa(e.seq)),
		Headers: map[string]string{outbox.HeaderMessageUUID: e.id.String(), callHeader: call},
	}
}

// sentCall is one Publish call and its outcomes.
type sentCall struct {
	tag    string
	events []event
	errs   []error
}

// record is a record read back from the topic.
type record struct {
	id   uuid.UUID
	key  string
	call string
}

func readRecords(t *testing.T, addr, topic string) []record {
	t.Helper()
	var out []record
	for _, r := range readAll(t, addr, topic) {
		rec := record{key: string(r.Key)}
		for _, h := range r.Headers {
			switch h.Key {
			case outbox.HeaderMessageUUID:
				rec.id = uuid.MustParse(string(h.Value))
			case callHeader:
				rec.call = string(h.Value)
			}
		}
		out = append(out, rec)
	}
	return out
}

// relayLike publishes events of its keys as a relay does: in write order
// per key, several per key and call, and from the first failure of a key on
// again in a later call.
type relayLike struct {
	name    string
	topic   string
	keys    []string
	pending map[string][]event
	next    map[string]int
	calls   []sentCall
}

func (r *relayLike) write(n int) {
	for _, k := range r.keys {
		for range n {
			r.pending[k] = append(r.pending[k], event{id: uuid.New(), key: k, seq: r.next[k]})
			r.next[k]++
		}
	}
}

func (r *relayLike) left() int {
	n := 0
	for _, evs := range r.pending {
		n += len(evs)
	}
	return n
}

// publish sends up to perKey pending events of every key, interleaved, and
// drops the ones published. It reports a contract violation: a message
// published after an earlier one of its key failed in the same call.
func (r *relayLike) publish(t *testing.T, p *kafka.Publisher, perKey int) {
	tag := fmt.Sprintf("%s-%d", r.name, len(r.calls))
	var evs []event
	for j := range perKey {
		for _, k := range r.keys {
			if j < len(r.pending[k]) {
				evs = append(evs, r.pending[k][j])
			}
		}
	}
	if len(evs) == 0 {
		return
	}
	msgs := make([]*outbox.Message, len(evs))
	for i, e := range evs {
		msgs[i] = e.message(r.topic, tag)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	errs := p.Publish(ctx, msgs)
	cancel()
	if errs == nil {
		errs = make([]error, len(msgs))
	}
	r.calls = append(r.calls, sentCall{tag: tag, events: evs, errs: errs})
	failed := map[string]bool{}
	for i, e := range evs {
		switch {
		case errs[i] != nil:
			failed[e.key] = true
		case failed[e.key]:
			t.Errorf("call %s: %s:%d published after an earlier message of its key failed", tag, e.key, e.seq)
		case e.id != r.pending[e.key][0].id:
			t.Errorf("call %s: %s:%d published out of order", tag, e.key, e.seq)
		default:
			r.pending[e.key] = r.pending[e.key][1:]
		}
	}
}

// checkCalls checks what reached the topic against the calls: per key, the
// first copies are in write order and nothing is lost; per call and key, the
// records that call appended are a prefix of its messages of that key, in
// order and once each, so that once a message of a key did not reach the
// topic, no later message of that key in that call did; a message reported
// published is on the topic from its call, a skipped or permanently failed
// one is not; and copies beyond the first are at most the failures that
// were not skipped nor permanent (what a relay counts as possible
// duplicates).
func checkCalls(t *testing.T, recs []record, calls []sentCall) {
	t.Helper()
	byID := map[uuid.UUID]event{}
	written := map[string]int{}
	uncertain := 0
	for _, c := range calls {
		for i, e := range c.events {
			byID[e.id] = e
			written[e.key] = max(written[e.key], e.seq+1)
			if err := c.errs[i]; err != nil && !errors.Is(err, outbox.ErrSkipped) && !errors.Is(err, outbox.ErrPermanent) {
				uncertain++
			}
		}
	}

	seen := map[uuid.UUID]bool{}
	firstNext := map[string]int{}
	byCall := map[string][]uuid.UUID{}
	copies := 0
	for _, r := range recs {
		e, ok := byID[r.id]
		if !ok {
			continue // warm-up
		}
		byCall[r.call] = append(byCall[r.call], r.id)
		if seen[r.id] {
			copies++
			continue
		}
		seen[r.id] = true
		require.Equal(t, firstNext[e.key], e.seq, "key %s: first copies in write order", e.key)
		firstNext[e.key]++
	}
	for k, n := range written {
		require.Equal(t, n, firstNext[k], "key %s: every event on the topic", k)
	}
	require.LessOrEqual(t, copies, uncertain, "duplicates at most the uncertain failures")

	for _, c := range calls {
		onTopic := map[string][]uuid.UUID{}
		for _, id := range byCall[c.tag] {
			onTopic[byID[id].key] = append(onTopic[byID[id].key], id)
		}
		var order []string
		perKey := map[string][]int{}
		for i, e := range c.events {
			if _, ok := perKey[e.key]; !ok {
				order = append(order, e.key)
			}
			perKey[e.key] = append(perKey[e.key], i)
		}
		for _, k := range order {
			got := onTopic[k]
			idx := perKey[k]
			require.LessOrEqual(t, len(got), len(idx), "call %s key %s: appended once each", c.tag, k)
			for j, i := range idx {
				e, err := c.events[i], c.errs[i]
				if j < len(got) {
					require.Equal(t, e.id, got[j], "call %s key %s: a prefix of the call's messages, in order", c.tag, k)
					require.False(t, errors.Is(err, outbox.ErrSkipped) || errors.Is(err, outbox.ErrPermanent),
						"call %s: %s:%d on the topic but reported %v", c.tag, k, e.seq, err)
				} else {
					require.Error(t, err, "call %s: %s:%d reported published but not on the topic", c.tag, k, e.seq)
				}
			}
		}
	}
}

// TestOutageKeepsKeyOrder is P4 at the adapter: two relays share one
// publisher and publish batches of several keys with several messages each,
// while the broker is stopped and restarted under them, three times, for outages that end
// before, during and after the calls that meet them.
func TestOutageKeepsKeyOrder(t *testing.T) {
	t.Parallel()
	b := startBroker(t, devkafka.Config{Partitions: 3})
	p := newPublisher(t, kafka.Config{Brokers: []string{b.Addr()}})
	const topic = "p4"
	publishEventually(t, p, message(topic, "warm", "warm"))

	var writing atomic.Bool
	writing.Store(true)
	relays := make([]*relayLike, 2)
	var wg sync.WaitGroup
	for n := range relays {
		r := &relayLike{name: fmt.Sprint("r", n), topic: topic, pending: map[string][]event{}, next: map[string]int{}}
		for k := range 4 {
			r.keys = append(r.keys, fmt.Sprintf("r%d-k%d", n, k))
		}
		relays[n] = r
		wg.Go(func() {
			deadline := time.Now().Add(45 * time.Second)
			lastWrite := time.Time{}
			for writing.Load() || r.left() > 0 {
				if writing.Load() && time.Since(lastWrite) > 5*time.Millisecond {
					r.write(2)
					lastWrite = time.Now()
				}
				r.publish(t, p, 5)
				if time.Now().After(deadline) {
					t.Errorf("%s: %d events still pending", r.name, r.left())
					return
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	for _, down := range []time.Duration{300 * time.Millisecond, 3 * time.Second, 700 * time.Millisecond} {
		time.Sleep(400 * time.Millisecond)
		b.Stop()
		time.Sleep(down)
		require.NoError(t, b.Restart())
	}
	time.Sleep(300 * time.Millisecond)
	writing.Store(false)
	wg.Wait()
	require.False(t, t.Failed())

	var calls []sentCall
	unreachable, unknown := 0, 0
	for _, r := range relays {
		calls = append(calls, r.calls...)
		for _, c := range r.calls {
			for _, err := range c.errs {
				if errors.Is(err, outbox.ErrUnreachable) {
					unreachable++
				}
				if err != nil && strings.Contains(err.Error(), "outcome unknown") {
					unknown++
				}
			}
		}
	}
	recs := readRecords(t, b.Addr(), topic)
	t.Logf("%d calls, %d records, %d unreachable outcomes, %d unknown outcomes", len(calls), len(recs), unreachable, unknown)
	require.Positive(t, unreachable, "the outages met calls")
	checkCalls(t, recs, calls)
}

// A partition's messages over MaxMessageBytes go out as several batches, one
// after another. When one fails, the later batches still carry the keys that
// did not fail, and skip the ones that did.
func TestBatchesOverMaxMessageBytes(t *testing.T) {
	t.Parallel()
	b := startBroker(t, devkafka.Config{Partitions: 1})
	const topic = "chunks"
	msg := func(key string, n int) *outbox.Message {
		// Same size for every message: the same batch size for any four.
		m := message(topic, key, fmt.Sprintf("%s%d-%s", key, n, strings.Repeat("x", 200)))
		m.Headers[outbox.HeaderMessageUUID] = m.ID.String()
		return m
	}
	// Measure one record batch of one message.
	var mu sync.Mutex
	var sizes []int
	b.Cluster().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Partitions: []int32{0}, Count: -1, Observe: true,
		When: func(req kmsg.Request) bool {
			mu.Lock()
			defer mu.Unlock()
			for _, tp := range req.(*kmsg.ProduceRequest).Topics {
				for _, pp := range tp.Partitions {
					sizes = append(sizes, len(pp.Records))
				}
			}
			return true
		}})
	p1 := newPublisher(t, kafka.Config{Brokers: []string{b.Addr()}})
	require.Nil(t, publish(t, p1, msg("w", 0)))
	one := sizes[0]
	record := one - 61

	// Four messages fit in a batch, five do not.
	p := newPublisher(t, kafka.Config{Brokers: []string{b.Addr()}, MaxMessageBytes: 61 + 4*record + record/2})
	var requests atomic.Int32
	b.Cluster().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Partitions: []int32{0}, Count: -1,
		Err: kerr.InvalidRecord,
		When: func(kmsg.Request) bool {
			return requests.Add(1) == 3 // the second batch of the call below
		}})
	require.Nil(t, publish(t, p, msg("w", 1))) // request 1
	mu.Lock()
	sizes = nil
	mu.Unlock()

	msgs := []*outbox.Message{
		msg("a", 1), msg("b", 1), msg("c", 1), msg("d", 1), // batch 1
		msg("a", 2), msg("b", 2), msg("e", 1), msg("e", 2), // batch 2: refused
		msg("c", 2), msg("a", 3), msg("d", 2), msg("e", 3), // a3, e3 skipped
		msg("f", 1),
	}
	errs := publish(t, p, msgs...)
	require.Len(t, errs, len(msgs))
	for _, i := range []int{0, 1, 2, 3, 8, 10, 12} {
		require.NoError(t, errs[i], "message %d", i)
	}
	for _, i := range []int{4, 5, 6} {
		require.ErrorIs(t, errs[i], outbox.ErrPermanent, "message %d", i)
	}
	for _, i := range []int{7, 9, 11} {
		require.ErrorIs(t, errs[i], outbox.ErrSkipped, "message %d", i)
		require.NotErrorIs(t, errs[i], outbox.ErrPermanent, "message %d", i)
	}
	mu.Lock()
	require.Len(t, sizes, 3, "three batches, one request each: %v", sizes)
	for _, s := range sizes {
		require.LessOrEqual(t, s, 61+4*record+record/2)
	}
	require.Equal(t, 61+4*record, sizes[0], "exact batch size")
	mu.Unlock()

	var got []string
	for _, v := range values(readAll(t, b.Addr(), topic)) {
		got = append(got, strings.SplitN(v, "-", 2)[0])
	}
	require.Equal(t, []string{"w0", "w1", "a1", "b1", "c1", "d1", "c2", "d2", "f1"}, got)
}

// A batch is resent with its sequence numbers after an answer that leaves
// its fate open or that refuses it for now; the broker keeps one copy.
func TestResendKeepsSequence(t *testing.T) {
	t.Parallel()
	for _, code := range []*kerr.Error{
		kerr.RequestTimedOut,              // appended all the same
		kerr.NotEnoughReplicasAfterAppend, // appended all the same
		kerr.NotLeaderForPartition,        // refused
		kerr.NotEnoughReplicas,            // refused
		kerr.UnknownTopicOrPartition,      // refused
	} {
		t.Run(code.Message, func(t *testing.T) {
			t.Parallel()
			b := startBroker(t, devkafka.Config{Partitions: 1})
			p := newPublisher(t, kafka.Config{Brokers: []string{b.Addr()}})
			const topic = "resend"
			require.Nil(t, publish(t, p, message(topic, "a", "a0")))
			b.Cluster().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Partitions: []int32{0}, Err: code})
			require.Nil(t, publish(t, p, message(topic, "a", "a1"), message(topic, "b", "b1"), message(topic, "a", "a2")))
			require.Nil(t, publish(t, p, message(topic, "a", "a3")))
			require.Equal(t, []string{"a0", "a1", "b1", "a2", "a3"}, values(readAll(t, b.Addr(), topic)))
		})
	}
}

// A sequence error means the broker's producer state is not the
// publisher's: the batch is sent again once in a fresh epoch or under a new
// producer ID.
func TestSequenceErrorReinit(t *testing.T) {
	t.Parallel()
	for _, code := range []*kerr.Error{
		kerr.OutOfOrderSequenceNumber,
		kerr.UnknownProducerID,
		kerr.InvalidProducerEpoch,
	} {
		t.Run(code.Message, func(t *testing.T) {
			t.Parallel()
			b := startBroker(t, devkafka.Config{Partitions: 1})
			p := newPublisher(t, kafka.Config{Brokers: []string{b.Addr()}})
			const topic = "reinit"
			require.Nil(t, publish(t, p, message(topic, "a", "a0")))
			inits := b.Cluster().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.InitProducerID}, Count: -1, Observe: true})
			b.Cluster().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Partitions: []int32{0}, Err: code})
			require.Nil(t, publish(t, p, message(topic, "a", "a1"), message(topic, "a", "a2")))
			require.Nil(t, publish(t, p, message(topic, "a", "a3")))
			require.Equal(t, []string{"a0", "a1", "a2", "a3"}, values(readAll(t, b.Addr(), topic)))
			if code == kerr.InvalidProducerEpoch {
				require.Equal(t, 1, inits.Hits(), "a new producer ID")
			} else {
				require.Zero(t, inits.Hits(), "a new epoch, no new producer ID")
			}

			// Twice in a row: the second refusal fails the batch.
			b.Cluster().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Partitions: []int32{0}, Err: code, Count: 2})
			errs := publish(t, p, message(topic, "a", "a4"), message(topic, "a", "a5"))
			require.Len(t, errs, 2)
			require.Error(t, errs[0])
			require.NotErrorIs(t, errs[0], outbox.ErrPermanent)
			require.ErrorIs(t, errs[1], outbox.ErrSkipped)
			require.Nil(t, publish(t, p, message(topic, "a", "a6")))
			require.Equal(t, []string{"a0", "a1", "a2", "a3", "a6"}, values(readAll(t, b.Addr(), topic)))
		})
	}
}

// Several goroutines share one publisher and the same partitions: each
// partition takes one call at a time, so sequence numbers never clash.
func TestConcurrentCalls(t *testing.T) {
	t.Parallel()
	b := startBroker(t, devkafka.Config{Partitions: 3})
	p := newPublisher(t, kafka.Config{Brokers: []string{b.Addr()}})
	const topic = "concurrent"
	publishEventually(t, p, message(topic, "warm", "warm"))

	const workers, calls, keys, perKey = 8, 30, 3, 4
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			n := 0
			for range calls {
				var msgs []*outbox.Message
				for range perKey {
					for k := range keys {
						msgs = append(msgs, message(topic, fmt.Sprintf("w%d-k%d", w, k), fmt.Sprintf("w%d-k%d:%d", w, k, n)))
					}
					n++
				}
				if errs := publish(t, p, msgs...); errs != nil {
					t.Errorf("worker %d: %v", w, errors.Join(errs...))
					return
				}
			}
		})
	}
	wg.Wait()
	recs := readAll(t, b.Addr(), topic)
	require.Len(t, recs, 1+workers*calls*keys*perKey, "no duplicates, nothing lost")
	last := map[string]int{}
	for _, r := range recs[:] {
		if string(r.Key) == "warm" {
			continue
		}
		v := string(r.Value)
		n, err := strconv.Atoi(v[strings.IndexByte(v, ':')+1:])
		require.NoError(t, err)
		prev, ok := last[string(r.Key)]
		require.True(t, !ok || n > prev, "key %s: %d after %d", r.Key, n, prev)
		last[string(r.Key)] = n
	}
}

// When ctx ends while a request is out, Publish returns at once with
// outcomes marked unknown; the partition's next batch waits for that
// request and goes out in a new epoch, whatever became of the first.
func TestContextEndsInFlight(t *testing.T) {
	t.Parallel()
	b := startBroker(t, devkafka.Config{Partitions: 1})
	p := newPublisher(t, kafka.Config{Brokers: []string{b.Addr()}})
	const topic = "inflight"
	require.Nil(t, publish(t, p, message(topic, "a", "a0")))

	b.DropProduceResponses(time.Second)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	began := time.Now()
	errs := p.Publish(ctx, []*outbox.Message{message(topic, "a", "a1"), message(topic, "a", "a2")})
	require.Less(t, time.Since(began), time.Second, "returned when ctx ended")
	require.Len(t, errs, 2)
	for _, err := range errs {
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.ErrorContains(t, err, "outcome unknown")
		require.NotErrorIs(t, err, outbox.ErrSkipped)
		require.NotErrorIs(t, err, outbox.ErrPermanent)
	}

	// The records were appended; their ack was dropped. The next call
	// waits for the abandoned request to time out, then publishes.
	require.Nil(t, publish(t, p, message(topic, "a", "a3")))
	require.Equal(t, []string{"a0", "a1", "a2", "a3"}, values(readAll(t, b.Addr(), topic)))
}

// BenchmarkPublish publishes batches of 100 messages over 10 keys to a
// devkafka broker with 3 partitions.
func BenchmarkPublish(b *testing.B) {
	dev, err := devkafka.New(devkafka.Config{Partitions: 3})
	require.NoError(b, err)
	defer dev.Close()
	p, err := kafka.New(kafka.Config{Brokers: []string{dev.Addr()}})
	require.NoError(b, err)
	defer p.Close()
	msgs := make([]*outbox.Message, 100)
	for i := range msgs {
		msgs[i] = message("bench", fmt.Sprint("key-", i%10), fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, strings.Repeat("x", 200)))
	}
	ctx := context.Background()
	for b.Loop() {
		if errs := p.Publish(ctx, msgs); errs != nil {
			b.Fatal(errors.Join(errs...))
		}
	}
	b.ReportMetric(float64(b.N*len(msgs))/b.Elapsed().Seconds(), "msgs/s")
}

// On a cluster of several brokers, a call sends one request to each leader,
// at once; a partition whose leader moved is resent to the new leader.
func TestSeveralBrokers(t *testing.T) {
	t.Parallel()
	const topic = "multi"
	c, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.SeedTopics(6, topic))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	// kfake places leaders at random: spread them over the brokers before
	// the publisher reads the metadata.
	leaders := map[int32]bool{}
	for part := range int32(6) {
		require.NoError(t, c.MoveTopicPartition(topic, part, part%3))
		leaders[c.LeaderFor(topic, part)] = true
	}
	require.Len(t, leaders, 3, "the partitions spread over the brokers")
	p := newPublisher(t, kafka.Config{Brokers: c.ListenAddrs()})
	perNode := map[int32]*kfake.FaultHandle{}
	for node := range leaders {
		perNode[node] = c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Nodes: []int32{node}, Count: -1, Observe: true})
	}
	var msgs []*outbox.Message
	for i := range 60 {
		msgs = append(msgs, message(topic, fmt.Sprint("k", i%12), fmt.Sprintf("k%d:%d", i%12, i/12)))
	}
	require.Nil(t, publish(t, p, msgs...))
	for node, h := range perNode {
		require.Equal(t, 1, h.Hits(), "requests to broker %d", node)
	}

	// Every partition moves to another broker: the cached leaders answer
	// NOT_LEADER_OR_FOLLOWER, and the batches go to the new ones.
	for part := range int32(6) {
		require.NoError(t, c.MoveTopicPartition(topic, part, (c.LeaderFor(topic, part)+1)%3))
	}
	msgs = msgs[:0]
	for i := 60; i < 120; i++ {
		msgs = append(msgs, message(topic, fmt.Sprint("k", i%12), fmt.Sprintf("k%d:%d", i%12, i/12)))
	}
	require.Nil(t, publish(t, p, msgs...))

	recs := readAll(t, c.ListenAddrs()[0], topic)
	require.Len(t, recs, 120)
	next := map[string]int{}
	for _, r := range recs {
		v := string(r.Value)
		n, err := strconv.Atoi(v[strings.IndexByte(v, ':')+1:])
		require.NoError(t, err)
		require.Equal(t, next[string(r.Key)], n, "key %s in order", r.Key)
		next[string(r.Key)]++
	}
}

package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker/kafka"
	"github.com/outboxkit/outbox/internal/faulttest"
	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/internal/testenv/kafkacluster"
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
	tag        string
	events     []event
	errs       []error
	start, end time.Time
}

// record is a record read back from the topic.
type record struct {
	id   uuid.UUID
	key  string
	call string
}

func readRecords(t *testing.T, brokers []string, topic string) []record {
	t.Helper()
	var out []record
	for _, r := range testenv.ReadKafka(t, brokers, topic) {
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

func newRelayLike(name, topic string, keys int) *relayLike {
	r := &relayLike{name: name, topic: topic, pending: map[string][]event{}, next: map[string]int{}}
	for k := range keys {
		r.keys = append(r.keys, fmt.Sprintf("%s-k%d", name, k))
	}
	return r
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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	start := time.Now()
	errs := p.Publish(ctx, msgs)
	end := time.Now()
	cancel()
	if errs == nil {
		errs = make([]error, len(msgs))
	}
	r.calls = append(r.calls, sentCall{tag: tag, events: evs, errs: errs, start: start, end: end})
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

// outcomes counts the calls' failures by class.
func outcomes(calls []sentCall) (unreachable, unknown, failed int) {
	for _, c := range calls {
		for _, err := range c.errs {
			if err != nil {
				failed++
			}
			if errors.Is(err, outbox.ErrUnreachable) {
				unreachable++
			}
			if errors.Is(err, outbox.ErrUnknownOutcome) {
				unknown++
			}
		}
	}
	return unreachable, unknown, failed
}

// checkCalls checks what reached the topic against the calls: per key, the
// first copies are in write order and nothing is lost; per call and key, the
// records that call appended are a prefix of its messages of that key, in
// order and once each, so that once a message of a key did not reach the
// topic, no later message of that key in that call did; a message reported
// published is on the topic from its call, a skipped or permanently failed
// one is not; and copies beyond the first are at most the failures with an
// unknown outcome (what a relay counts as possible duplicates).
func checkCalls(t *testing.T, recs []record, calls []sentCall) {
	t.Helper()
	byID := map[uuid.UUID]event{}
	written := map[string]int{}
	for _, c := range calls {
		for _, e := range c.events {
			byID[e.id] = e
			written[e.key] = max(written[e.key], e.seq+1)
		}
	}
	_, unknown, _ := outcomes(calls)

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
	t.Logf("%d copies, %d unknown outcomes", copies, unknown)
	require.LessOrEqual(t, copies, unknown, "duplicates at most the unknown outcomes")

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
					require.True(t, err == nil || errors.Is(err, outbox.ErrUnknownOutcome),
						"call %s: %s:%d on the topic but reported %v", c.tag, k, e.seq, err)
				} else {
					require.Error(t, err, "call %s: %s:%d reported published but not on the topic", c.tag, k, e.seq)
				}
			}
		}
	}
}

// drain publishes until every pending event of r is published, writing
// n more events per key while more is open.
func (r *relayLike) drain(t *testing.T, p *kafka.Publisher, perKey int, more *atomic.Bool, n int) {
	deadline := time.Now().Add(3 * time.Minute)
	for more.Load() || r.left() > 0 {
		if more.Load() && r.left() < len(r.keys)*perKey {
			r.write(n)
		}
		r.publish(t, p, perKey)
		if time.Now().After(deadline) {
			t.Errorf("%s: %d events still pending", r.name, r.left())
			return
		}
	}
}

// The leader of a partition dies (SIGKILL) while a call of 40,000 messages
// over 40 keys is in flight, on a 3-broker cluster; the relay then retries
// what failed. Per key, nothing is appended after a failed message in its
// call, every event reaches the topic in order, and copies are at most the
// unknown outcomes. A short DeliveryTimeout makes the records that meet the
// failover fail, rather than wait for the new leader.
func TestLeaderDiesMidCall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node Kafka cluster")
	}
	t.Parallel()
	c := kafkacluster.Start(t, 3)
	topic := c.CreateTopic(6)
	p := newPublisher(t, kafka.Config{Brokers: c.Brokers(), DeliveryTimeout: 2 * time.Second})
	tc := testenv.ConsumeKafka(t, c.Brokers(), topic)

	relay := newRelayLike("r", topic, 40)
	relay.write(1)
	// The consumer and the leader are ready before the big call. On a
	// loaded machine the new cluster can fail a first call within the
	// short DeliveryTimeout: what failed goes again, as a relay's retry.
	// Events on the topic, copies counted once.
	events := func() int {
		ids := map[uuid.UUID]bool{}
		for _, r := range tc.Received() {
			ids[r.ID] = true
		}
		return len(ids)
	}
	waitUntil(t, "the warm-up call on the topic", func() bool {
		relay.publish(t, p, 1)
		return events() == len(relay.keys)
	})
	leader := c.Leader(topic, 0)
	relay.write(1000)
	first := make(chan struct{})
	go func() {
		defer close(first)
		relay.publish(t, p, 1000)
	}()
	// The first records of the call are on the topic: it is in flight.
	waitUntil(t, "the call's first records on the topic", func() bool { return events() > len(relay.keys) })
	killedAt := time.Now()
	c.Kill(leader)
	<-first
	call := relay.calls[len(relay.calls)-1]
	unreachable, unknown, failed := outcomes(relay.calls)
	t.Logf("node %d, leader of partition 0, killed %v into a call of %d messages that took %v: %d failed (%d unreachable, %d unknown)",
		c.NodeID(leader), killedAt.Sub(call.start), len(call.events), call.end.Sub(call.start), failed, unreachable, unknown)
	require.True(t, call.end.After(killedAt), "the call was in flight when the leader died")

	var more atomic.Bool
	more.Store(true)
	time.AfterFunc(3*time.Second, func() { more.Store(false) })
	relay.drain(t, p, 100, &more, 20)
	require.False(t, t.Failed())
	unreachable, unknown, failed = outcomes(relay.calls)
	t.Logf("%d calls, %d failed outcomes (%d unreachable, %d unknown)", len(relay.calls), failed, unreachable, unknown)
	checkCalls(t, readRecords(t, c.Brokers(), topic), relay.calls)
}

// A single broker is killed and restarted, then paused and resumed, while
// two relays publish: calls that meet refused connections report
// unreachable with no unknown outcome; a paused broker (connections open,
// no answer) is reported within the documented bound, as unreachable with an
// unknown outcome; and the relays' events all reach the topic in order, with
// copies at most the unknown outcomes.
func TestSingleBrokerOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Kafka node")
	}
	t.Parallel()
	c := kafkacluster.Start(t, 1)
	topic := c.CreateTopic(3)
	tc := testenv.ConsumeKafka(t, c.Brokers(), topic)
	p := newPublisher(t, kafka.Config{Brokers: c.Brokers(), DeliveryTimeout: 2 * time.Second})
	relays := []*relayLike{newRelayLike("r0", topic, 4), newRelayLike("r1", topic, 4)}
	var more atomic.Bool
	more.Store(true)
	var wg sync.WaitGroup
	for _, r := range relays {
		wg.Go(func() { r.drain(t, p, 5, &more, 1) })
	}
	flowing := func() {
		t.Helper()
		n := len(tc.Received())
		waitUntil(t, "20 more events on the topic", func() bool { return len(tc.Received()) > n+20 })
	}

	// Outage: the relays meet a dead broker, then refused connections. A
	// publisher that never connected sends nothing.
	flowing()
	warm := newPublisher(t, kafka.Config{Brokers: c.Brokers(), DeliveryTimeout: 2 * time.Second})
	faulttest.RequireAccepted(t, publish(t, warm, message(topic, "w", "w0")))
	down := time.Now()
	c.Kill(0)
	fresh := newPublisher(t, kafka.Config{Brokers: c.Brokers(), DeliveryTimeout: 2 * time.Second})
	errs := publish(t, fresh, message(topic, "x", "x1"), message(topic, "x", "x2"))
	require.ErrorIs(t, errs[0], outbox.ErrUnreachable)
	require.ErrorIs(t, errs[1], outbox.ErrSkipped)
	for _, err := range errs {
		require.NotErrorIs(t, err, outbox.ErrUnknownOutcome, "no connection, no request")
	}
	// A publisher that knows the topic: its first call may write into the
	// connection the broker left; the next one meets refused connections.
	errs = publish(t, warm, message(topic, "w", "w1"))
	t.Logf("warm publisher's first call after the kill: %v", errs)
	errs = publish(t, warm, message(topic, "v", "v1"), message(topic, "v", "v2"))
	require.ErrorIs(t, errs[0], outbox.ErrUnreachable)
	require.ErrorIs(t, errs[1], outbox.ErrSkipped)
	for _, err := range errs {
		require.NotErrorIs(t, err, outbox.ErrUnknownOutcome, "no connection, no request")
	}
	c.Restart(0)
	up := time.Now()

	// Blackhole: a publisher connected before the pause sends its request
	// into an open connection that nobody reads.
	flowing()
	black := newPublisher(t, kafka.Config{Brokers: c.Brokers()})
	faulttest.RequireAccepted(t, publish(t, black, message(topic, "y", "y0")))
	c.Pause(0)
	began := time.Now()
	errs = publish(t, black, message(topic, "y", "y1"), message(topic, "y", "y2"))
	took := time.Since(began)
	t.Logf("paused broker reported after %v", took)
	require.Less(t, took, reportBound+slack)
	requireAll(t, errs, 2, outbox.ErrUnreachable)
	requireAll(t, errs, 2, outbox.ErrUnknownOutcome)
	c.Resume(0)

	flowing()
	more.Store(false)
	wg.Wait()
	require.False(t, t.Failed())
	var calls []sentCall
	refusedCalls := 0
	for _, r := range relays {
		calls = append(calls, r.calls...)
		for _, call := range r.calls {
			if call.start.After(down) && call.end.Before(up) && !slices.ContainsFunc(call.errs, func(err error) bool {
				unreachable := errors.Is(err, outbox.ErrUnreachable) || errors.Is(err, outbox.ErrSkipped)
				return !unreachable || errors.Is(err, outbox.ErrUnknownOutcome)
			}) {
				refusedCalls++
			}
		}
	}
	unreachable, unknown, failed := outcomes(calls)
	t.Logf("%d calls, %d failed outcomes (%d unreachable, %d unknown), %d calls met refused connections only",
		len(calls), failed, unreachable, unknown, refusedCalls)
	require.Positive(t, refusedCalls, "calls met refused connections and counted no unknown outcome")
	checkCalls(t, readRecords(t, c.Brokers(), topic), calls)
}

// Several goroutines share one publisher and the same partitions: calls
// run one at a time, so per-key order holds and nothing is duplicated.
func TestConcurrentCalls(t *testing.T) {
	t.Parallel()
	brokers := testenv.Kafka(t)
	topic := testenv.KafkaTopic(t, brokers, 3)
	p := newPublisher(t, kafka.Config{Brokers: brokers})

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
	recs := testenv.ReadKafka(t, brokers, topic)
	require.Len(t, recs, workers*calls*keys*perKey, "no duplicates, nothing lost")
	last := map[string]int{}
	for _, r := range recs {
		v := string(r.Value)
		n, err := strconv.Atoi(v[strings.IndexByte(v, ':')+1:])
		require.NoError(t, err)
		prev, ok := last[string(r.Key)]
		require.True(t, !ok || n > prev, "key %s: %d after %d", r.Key, n, prev)
		last[string(r.Key)] = n
	}
}

// waitUntil polls cond every millisecond, and fails the test when it has not
// held within two minutes.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 2m waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

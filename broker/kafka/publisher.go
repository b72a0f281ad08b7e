package kafka

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/IBM/sarama"
	wmkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"

	"github.com/outboxkit/outbox"
)

// errClosed is transient: another relay instance, or this one after a
// restart, publishes the events.
var errClosed = errors.New("kafka publisher closed")

// Publisher is a [broker.Publisher] for Kafka. It is safe for concurrent use.
//
// A Publish call groups its messages by partition, in call order, and sends
// one produce request per leader broker (to all brokers at once) holding one
// record batch per partition. Kafka appends a record batch as a whole or not
// at all, and the same key always maps to the same partition: so a call's
// messages of one key share one fate and never overtake each other. A
// partition's messages over MaxMessageBytes are split into batches sent one
// after another, each only after the one before it was appended; see
// [Publisher.Publish] for what happens to the rest when one fails.
//
// The publisher keeps the sequence numbers of Kafka's idempotent producer
// itself, one counter per partition, and holds a partition for one call at a
// time, so that concurrent calls (several relays sharing one publisher) never
// interleave their batches of a partition. A batch is resent with the same
// sequence numbers, so a resend after a lost ack is dropped by the broker
// instead of duplicated.
//
// Whenever the fate of a batch stays unknown (no answer after the resend, or
// Publish returned because its context ended while the request was out), the
// publisher moves to a new producer epoch before that partition's next batch
// and starts its sequence numbers over. The broker accepts the new epoch from
// sequence 0 whatever became of the unknown batch, and refuses any batch of
// the old epoch from then on, so the unknown batch cannot land after a later
// one. Without the new epoch no sequence number is safe to go on with: if
// the unknown batch was lost, the numbers after it leave a gap that the
// broker refuses (or, having lost track of the producer, accepts past the
// gap); if it was appended, reusing its numbers makes the broker take the
// next batch, when it has the same length, for a copy of that one and drop
// it while answering success.
type Publisher struct {
	client   sarama.Client
	conf     *sarama.Config
	maxBytes int   // largest record batch
	version  int16 // of produce requests

	prod producer

	mu           sync.Mutex // guards closed, parts, partitioners and adding to wg
	closed       bool
	parts        map[topicPartition]*partition
	partitioners map[string]sarama.Partitioner
	wg           sync.WaitGroup // Publish calls and their senders
}

// topicPartition names a partition.
type topicPartition struct {
	topic     string
	partition int32
}

func (a topicPartition) compare(b topicPartition) int {
	return cmp.Or(cmp.Compare(a.topic, b.topic), cmp.Compare(a.partition, b.partition))
}

// partition is the producer state of one partition, shared by all calls. The
// call that holds sem owns gen and seq.
type partition struct {
	tp  topicPartition
	sem chan struct{} // holds a token while a call owns the partition
	gen uint64        // the producer generation that seq counts in
	seq int32         // the next sequence number in generation gen
}

// producer is the identity of the idempotent producer: its ID and epoch.
// Every new epoch or ID is a new generation, in which every partition's
// sequence numbers start over at 0.
type producer struct {
	mu     sync.Mutex
	id     int64
	epoch  int16
	gen    uint64
	reinit bool // a new producer ID must be fetched before the next batch
}

// bump moves to a new epoch, unless the generation moved on since gen
// already: any later epoch fences the batches of gen just as well. When the
// epoch is used up, or newID asks for it, the next batch waits for a new
// producer ID instead.
func (pr *producer) bump(gen uint64, newID bool) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.gen != gen || pr.reinit {
		return
	}
	if newID || pr.epoch == math.MaxInt16 {
		pr.reinit = true
		return
	}
	pr.epoch++
	pr.gen++
}

// New connects to cfg.Brokers and returns a publisher with the producer
// configuration of [NewSaramaConfig]. It fails if no broker answers or the
// cluster hands out no producer ID. Close releases the connections.
func New(cfg Config) (*Publisher, error) {
	sc, err := NewSaramaConfig(cfg)
	if err != nil {
		return nil, err
	}
	client, err := sarama.NewClient(cfg.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", classify(err))
	}
	p := &Publisher{
		client:       client,
		conf:         sc,
		maxBytes:     sc.Producer.MaxMessageBytes,
		version:      produceVersion(sc.Version),
		parts:        map[topicPartition]*partition{},
		partitioners: map[string]sarama.Partitioner{},
	}
	id, epoch, err := p.initProducerID()
	if err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("kafka: init producer ID: %w", classify(err))
	}
	p.prod.id, p.prod.epoch, p.prod.gen = id, epoch, 1
	return p, nil
}

// produceVersion is the produce request version that sarama's own producer
// uses for v. Record batches (v2) and idempotence need at least 3.
func produceVersion(v sarama.KafkaVersion) int16 {
	for _, s := range []struct {
		min     sarama.KafkaVersion
		version int16
	}{
		{sarama.V3_7_0_0, 10}, {sarama.V2_8_0_0, 9}, {sarama.V2_4_0_0, 8}, {sarama.V2_1_0_0, 7},
		{sarama.V2_0_0_0, 6}, {sarama.V1_0_0_0, 5},
	} {
		if v.IsAtLeast(s.min) {
			return s.version
		}
	}
	return 3
}

// initProducerID asks the cluster for a new producer ID, trying a second
// broker if the first fails.
func (p *Publisher) initProducerID() (int64, int16, error) {
	req := &sarama.InitProducerIDRequest{ProducerID: -1, ProducerEpoch: -1}
	switch v := p.conf.Version; {
	case v.IsAtLeast(sarama.V2_7_0_0):
		req.Version = 4
	case v.IsAtLeast(sarama.V2_5_0_0):
		req.Version = 3
	case v.IsAtLeast(sarama.V2_4_0_0):
		req.Version = 2
	case v.IsAtLeast(sarama.V2_0_0_0):
		req.Version = 1
	}
	var errs []error
	for range 2 {
		b := p.client.LeastLoadedBroker()
		if b == nil {
			break
		}
		resp, err := b.InitProducerID(req)
		switch {
		case err != nil:
			errs = append(errs, err)
			_ = b.Close()
		case !errors.Is(resp.Err, sarama.ErrNoError):
			return 0, 0, resp.Err
		default:
			return resp.ProducerID, resp.ProducerEpoch, nil
		}
	}
	return 0, 0, sarama.Wrap(sarama.ErrOutOfBrokers, errs...)
}

// ensureProducer fetches a new producer ID if one is due.
func (p *Publisher) ensureProducer() error {
	pr := &p.prod
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if !pr.reinit {
		return nil
	}
	id, epoch, err := p.initProducerID()
	if err != nil {
		return fmt.Errorf("init producer ID: %w", err)
	}
	pr.id, pr.epoch, pr.reinit = id, epoch, false
	pr.gen++
	return nil
}

// Close waits for the calls in flight, including the requests of calls that
// returned early because their context ended, and closes the connections.
// Publish calls after Close fail with a transient error.
func (p *Publisher) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.wg.Wait()
	if err := p.client.Close(); err != nil && !errors.Is(err, sarama.ErrClosedClient) {
		return fmt.Errorf("kafka: %w", err)
	}
	return nil
}

// enter registers a call, unless the publisher is closed.
func (p *Publisher) enter() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.wg.Add(1)
	return true
}

// partition returns the shared state of tp.
func (p *Publisher) partition(tp topicPartition) *partition {
	p.mu.Lock()
	defer p.mu.Unlock()
	part := p.parts[tp]
	if part == nil {
		part = &partition{tp: tp, sem: make(chan struct{}, 1)}
		p.parts[tp] = part
	}
	return part
}

// assign sets the partition of each key of topic (nil: no key), with the
// partitioner of the sarama config (sarama's hash partitioner, as
// watermill-kafka's publisher uses), over the topic's partitions as sarama's
// producer does.
func (p *Publisher) assign(topic string, partitions []int32, keys [][]byte, out []int32) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	pt := p.partitioners[topic]
	if pt == nil {
		pt = p.conf.Producer.Partitioner(topic)
		p.partitioners[topic] = pt
	}
	n := int32(len(partitions))
	var pm sarama.ProducerMessage
	seen := map[string]int32{} // a key's partition, hashed once per call
	for i, key := range keys {
		pm.Key = nil
		if key != nil {
			if part, ok := seen[string(key)]; ok {
				out[i] = part
				continue
			}
			pm.Key = sarama.ByteEncoder(key)
		}
		choice, err := pt.Partition(&pm, n)
		if err != nil {
			return err
		}
		if choice < 0 || choice >= n {
			return sarama.ErrInvalidPartition
		}
		out[i] = partitions[choice]
		if key != nil {
			seen[string(key)] = out[i]
		}
	}
	return nil
}

// Publish implements [broker.Publisher]. The message UUID header is the event
// ID, the other headers are the message headers, the key is the message key
// (none when empty) and the value is the payload, unchanged: watermill-kafka's
// DefaultMarshaler reads it back as a Watermill message.
//
// A failed record batch fails its messages: the first message of each key in
// it gets the error and the key's later messages, in the batch or after it,
// are skipped ([outbox.ErrSkipped]). A batch whose fate is unknown (it may
// have been appended) gives every one of its messages the error instead, never
// ErrSkipped nor ErrPermanent, since each may be on the topic. When a
// partition's messages take several batches and one fails, the later batches
// of that partition are still sent, without the messages of the keys that
// failed; unkeyed messages never wait for each other. Once a batch failed
// because the broker could not be reached, no batch that was not sent yet is
// sent in this call: its messages fail as unreachable.
//
// Publish returns when every message has an outcome, or when ctx ends. In
// that case a request may still be out: its messages get an error that wraps
// ctx's error and says that the outcome is unknown, and the partition's next
// batch, in any call, waits until the request returned and goes out in a new
// producer epoch.
func (p *Publisher) Publish(ctx context.Context, msgs []*outbox.Message) []error {
	if len(msgs) == 0 {
		return nil
	}
	c := newCall(p, ctx, msgs)
	if !p.enter() {
		for i := range msgs {
			c.errs[i] = errClosed
		}
		return c.errs
	}
	if err := ctx.Err(); err != nil {
		defer p.wg.Done()
		c.stop(err)
		return c.result()
	}
	c.prepare()
	done := make(chan struct{})
	go func() {
		defer p.wg.Done()
		defer close(done)
		c.run()
	}()
	select {
	case <-done:
	case <-ctx.Done():
		select {
		case <-done:
		default:
			return c.abandon(ctx.Err())
		}
	}
	return c.result()
}

// prepare builds the records. A message too large by itself fails
// permanently, and later messages of its key are skipped.
func (c *call) prepare() {
	for i, m := range c.msgs {
		rec := newRecord(m)
		c.recs[i] = rec
		if size := recordBatchOverhead + recordSize(rec, 0); size > c.p.maxBytes {
			c.fail(i, fmt.Errorf("%w: %d bytes over MaxMessageBytes %d: %w",
				outbox.ErrPermanent, size, c.p.maxBytes, sarama.ErrMessageSizeTooLarge))
		}
	}
}

// newRecord returns m as watermill-kafka's DefaultMarshaler writes it: the
// header _watermill_message_uuid (wmkafka.UUIDHeaderKey) holds the event ID
// and comes first, then one header per message header (but the UUID one)
// in map order; the value is the payload, the key the message key (none
// when empty). One buffer holds the key and every header's bytes.
func newRecord(m *outbox.Message) *sarama.Record {
	id := m.ID.String()
	size := len(wmkafka.UUIDHeaderKey) + len(id) + len(m.Key)
	n := 1
	for k, v := range m.Headers {
		if k != wmkafka.UUIDHeaderKey {
			size += len(k) + len(v)
			n++
		}
	}
	buf := make([]byte, 0, size)
	hs := make([]sarama.RecordHeader, n)
	ptrs := make([]*sarama.RecordHeader, n)
	take := func(s string) []byte {
		at := len(buf)
		buf = append(buf, s...)
		return buf[at:len(buf):len(buf)]
	}
	hs[0] = sarama.RecordHeader{Key: take(wmkafka.UUIDHeaderKey), Value: take(id)}
	ptrs[0] = &hs[0]
	j := 1
	for k, v := range m.Headers {
		if k != wmkafka.UUIDHeaderKey {
			hs[j] = sarama.RecordHeader{Key: take(k), Value: take(v)}
			ptrs[j] = &hs[j]
			j++
		}
	}
	rec := &sarama.Record{Value: m.Value, Headers: ptrs}
	if m.Key != "" {
		rec.Key = take(m.Key)
	}
	return rec
}

// result returns the outcomes once the call is over.
func (c *call) result() []error {
	if slices.ContainsFunc(c.errs, func(err error) bool { return err != nil }) {
		return c.errs
	}
	return nil
}

// abandon returns the outcomes so far when ctx ended before the call was
// over. The call goes on until its requests in flight return, then stops.
func (c *call) abandon(cause error) []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.abandoned = true
	out := make([]error, len(c.msgs))
	failed := map[[2]string]error{}
	for i, m := range c.msgs {
		k := c.key(i)
		switch c.status[i] {
		case settled:
			out[i] = c.errs[i]
		case inFlight:
			out[i] = unknownOutcome(fmt.Errorf("produce: %w", cause))
		default:
			if m.Key != "" && failed[k] != nil {
				out[i] = skipped(failed[k])
			} else {
				out[i] = fmt.Errorf("produce: %w", cause)
			}
		}
		if out[i] != nil && m.Key != "" && failed[k] == nil {
			failed[k] = out[i]
		}
	}
	return out
}

// skipped is the error of a message not sent, or failed with its batch,
// after an earlier message of its key failed with cause. It also matches
// outbox.ErrUnreachable when cause does, so that a batch lost to an outage
// reads as unreachable as a whole; it never matches outbox.ErrPermanent,
// since the message itself may be fine.
func skipped(cause error) error {
	if errors.Is(cause, outbox.ErrUnreachable) {
		return fmt.Errorf("%w: %w", outbox.ErrSkipped, cause)
	}
	return fmt.Errorf("%w: %v", outbox.ErrSkipped, cause)
}

// unknownOutcome is the error of a message whose batch may have been
// appended. It keeps the unreachable class of err but never the permanent
// one: the message may be on the topic, and a later attempt may succeed.
func unknownOutcome(err error) error {
	if errors.Is(err, outbox.ErrPermanent) {
		return fmt.Errorf("outcome unknown, may be on the topic: %v", err)
	}
	return fmt.Errorf("outcome unknown, may be on the topic: %w", err)
}

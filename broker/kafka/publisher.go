package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/IBM/sarama"
	wmkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker"
)

// recordBatchOverhead is what sarama counts for a record batch's header when
// it decides whether one more message still fits in a partition's batch.
const recordBatchOverhead = 61

// errClosed is transient: another relay instance, or this one after a
// restart, publishes the events.
var errClosed = errors.New("kafka publisher closed")

// Publisher is a [broker.Publisher] for Kafka. It is safe for concurrent use.
//
// A Publish call is sent in waves of at most MaxMessageBytes, usually one:
// each wave is one produce request per broker, and each partition's share of
// it one record batch, which Kafka appends or rejects as a whole. That is
// what keeps per-key order: same-key messages share a partition, hence a
// batch, hence a fate. A later wave only sends keys that have not failed. A
// batch the broker finds too large is sent again message by message, so that
// only the message that is too large by itself fails permanently.
//
// sarama closes a batch 5 ms after its first message. Should handing over a
// wave take longer, a partition's share can be split over two requests, and
// the second can be appended after the first failed; its messages are then
// reported as published, since they are, and the key's order is broken.
type Publisher struct {
	producer sarama.AsyncProducer
	maxBytes int
	done     chan struct{} // closed when every result has been delivered

	mu     sync.RWMutex // held for reading while sending, so Close waits for senders
	closed bool
}

// New connects to cfg.Brokers and returns a publisher with the producer
// configuration of [NewSaramaConfig]. It fails if no broker answers. Close
// releases the producer and its connections.
func New(cfg Config) (*Publisher, error) {
	sc, err := NewSaramaConfig(cfg)
	if err != nil {
		return nil, err
	}
	producer, err := sarama.NewAsyncProducer(cfg.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", classify(err))
	}
	p := &Publisher{
		producer: producer,
		maxBytes: sc.Producer.MaxMessageBytes,
		done:     make(chan struct{}),
	}
	go p.deliver()
	return p, nil
}

// Close flushes what is in flight and closes the producer. Publish calls
// after Close fail with a transient error.
func (p *Publisher) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.producer.AsyncClose()
	<-p.done
	return nil
}

// pending travels in a ProducerMessage's Metadata to route its outcome back
// to the wave that sent it.
type pending struct {
	index   int
	results chan<- result
}

type result struct {
	index     int
	partition int32
	err       error
}

// deliver routes every outcome to its wave. Result channels are buffered for
// the whole wave, so a caller that stopped waiting never blocks it.
func (p *Publisher) deliver() {
	defer close(p.done)
	successes, errs := p.producer.Successes(), p.producer.Errors()
	for successes != nil || errs != nil {
		select {
		case m, ok := <-successes:
			if !ok {
				successes = nil
				continue
			}
			pd := m.Metadata.(pending)
			pd.results <- result{index: pd.index, partition: m.Partition}
		case e, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			pd := e.Msg.Metadata.(pending)
			pd.results <- result{index: pd.index, partition: e.Msg.Partition, err: e.Err}
		}
	}
}

// Publish implements [broker.Publisher]. The message UUID header is the
// event ID, the other headers are the message headers, the key is the
// message key (none when empty) and the value is the payload, unchanged:
// watermill-kafka's DefaultMarshaler reads it back as a Watermill message.
func (p *Publisher) Publish(ctx context.Context, msgs []*outbox.Message) []error {
	c := &call{p: p, ctx: ctx, msgs: msgs, pms: make([]*sarama.ProducerMessage, len(msgs)),
		errs: make([]error, len(msgs)), failed: map[[2]string]error{}}
	var wave []int
	waveBytes := recordBatchOverhead
	for i, m := range msgs {
		pm, err := marshal(ctx, m)
		size := 0
		if err == nil {
			size = pm.ByteSize(2) // record batch format v2
		}
		fits := err == nil && size <= p.maxBytes
		if fits && len(wave) > 0 && waveBytes+size >= p.maxBytes {
			c.send(wave)
			wave, waveBytes = nil, recordBatchOverhead
		}
		switch gateErr := c.gate(i); {
		case gateErr != nil:
			c.fail(i, gateErr)
		case err != nil:
			c.fail(i, fmt.Errorf("%w: marshal: %w", outbox.ErrPermanent, err))
		case size > p.maxBytes:
			c.fail(i, fmt.Errorf("%w: %d bytes over MaxMessageBytes %d: %w",
				outbox.ErrPermanent, size, p.maxBytes, sarama.ErrMessageSizeTooLarge))
		default:
			c.pms[i] = pm
			wave = append(wave, i)
			waveBytes += size
		}
	}
	if len(wave) > 0 {
		c.send(wave)
	}
	for _, err := range c.errs {
		if err != nil {
			return c.errs
		}
	}
	return nil
}

func marshal(ctx context.Context, m *outbox.Message) (*sarama.ProducerMessage, error) {
	pm, err := wmkafka.DefaultMarshaler{}.Marshal(m.Topic, broker.ToWatermill(ctx, m))
	if err != nil {
		return nil, err
	}
	if m.Key != "" {
		pm.Key = sarama.StringEncoder(m.Key)
	}
	return pm, nil
}

// call is the state of one Publish call.
type call struct {
	p           *Publisher
	ctx         context.Context
	msgs        []*outbox.Message
	pms         []*sarama.ProducerMessage
	errs        []error
	failed      map[[2]string]error // the first failure of each topic and key
	unreachable error               // set once a message failed as unreachable
}

func (c *call) key(i int) [2]string { return [2]string{c.msgs[i].Topic, c.msgs[i].Key} }

// gate says why message i must not be sent, if it must not.
func (c *call) gate(i int) error {
	switch cause := c.failed[c.key(i)]; {
	case c.msgs[i].Key != "" && cause != nil:
		return skipped(cause)
	case c.unreachable != nil:
		// Waiting for the same timeouts again would only delay the
		// report of an outage.
		return fmt.Errorf("not sent: %w", c.unreachable)
	case c.ctx.Err() != nil:
		return fmt.Errorf("produce: %w", c.ctx.Err())
	}
	return nil
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

func (c *call) fail(i int, err error) {
	c.errs[i] = err
	if k := c.key(i); c.msgs[i].Key != "" && c.failed[k] == nil {
		c.failed[k] = err
	}
	if errors.Is(err, outbox.ErrUnreachable) && c.unreachable == nil {
		c.unreachable = err
	}
}

// send produces the wave and records every outcome in slice order, so that
// a failure skips the later messages of its key.
func (c *call) send(wave []int) {
	results := c.produce(wave)

	// A partition's batch that is too large for the broker fails as a
	// whole: only a message alone in its batch is surely too large itself.
	// The others are sent again one by one to find out.
	type partition struct {
		topic string
		id    int32
	}
	tooLarge := map[partition]int{}
	for _, i := range wave {
		if r, ok := results[i]; ok && errors.Is(r.err, sarama.ErrMessageSizeTooLarge) {
			tooLarge[partition{c.msgs[i].Topic, r.partition}]++
		}
	}
	var again []int
	for _, i := range wave {
		r, ok := results[i]
		switch {
		case !ok:
			if c.errs[i] == nil {
				c.fail(i, fmt.Errorf("produce: %w", c.ctx.Err()))
			}
		case r.err == nil:
			// Already on the topic even if an earlier message of its
			// key failed (possible only when sarama split a wave).
		case c.msgs[i].Key != "" && c.failed[c.key(i)] != nil:
			c.errs[i] = skipped(c.failed[c.key(i)])
		case tooLarge[partition{c.msgs[i].Topic, r.partition}] > 1:
			again = append(again, i)
		default:
			c.fail(i, classify(fmt.Errorf("produce: %w", r.err)))
		}
	}
	for _, i := range again {
		if err := c.gate(i); err != nil {
			c.fail(i, err)
			continue
		}
		c.send([]int{i})
	}
}

// produce hands the wave to sarama and waits for the outcomes, or for ctx.
// Messages it could not hand over get an error here and no result.
func (c *call) produce(wave []int) map[int]result {
	ch := make(chan result, len(wave))
	sent := 0
	c.p.mu.RLock()
	for _, i := range wave {
		if c.p.closed {
			c.fail(i, errClosed)
			continue
		}
		if c.ctx.Err() != nil {
			c.fail(i, fmt.Errorf("produce: %w", c.ctx.Err()))
			continue
		}
		// A fresh message each time: sarama owns the ones it was given.
		tmpl := c.pms[i]
		pm := &sarama.ProducerMessage{Topic: tmpl.Topic, Key: tmpl.Key, Value: tmpl.Value,
			Headers: tmpl.Headers, Metadata: pending{index: i, results: ch}}
		select {
		case c.p.producer.Input() <- pm:
			sent++
		case <-c.ctx.Done():
			c.fail(i, fmt.Errorf("produce: %w", c.ctx.Err()))
		}
	}
	c.p.mu.RUnlock()

	results := make(map[int]result, sent)
	for len(results) < sent {
		select {
		case r := <-ch:
			results[r.index] = r
		case <-c.ctx.Done():
			return results
		}
	}
	return results
}

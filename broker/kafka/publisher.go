package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outboxkit/outbox"
)

// errClosed is transient: another relay instance, or this one after a
// restart, publishes the events.
var errClosed = errors.New("kafka publisher closed")

// Publisher is a [broker.Publisher] for Kafka on a franz-go client. It is
// safe for concurrent use; calls run one at a time.
type Publisher struct {
	cfg     Config // with defaults
	timeout time.Duration

	// sem holds a token while a call runs or the publisher closes; it
	// guards closed and the transactional state below, and only its
	// holder replaces cl.
	sem    chan struct{}
	closed bool
	// clMu guards cl against a replacement while Ping reads it.
	clMu sync.Mutex
	cl   *kgo.Client
	// cur is the round in progress, for the client's hooks.
	cur atomic.Pointer[round]

	// renew is set in transactional mode when the client must be replaced
	// before the next transaction: its producer was fenced, or a
	// transaction may be left open. progressReady is set once the
	// progress topic was checked.
	renew, progressReady bool
}

// New returns a publisher to cfg.Brokers. It does not connect: a broker that
// is down fails the publishes, not New. Close releases the client.
func New(cfg Config) (*Publisher, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	p := &Publisher{cfg: cfg, timeout: cfg.DeliveryTimeout, sem: make(chan struct{}, 1)}
	cl, err := p.newClient()
	if err != nil {
		return nil, err
	}
	p.cl = cl
	return p, nil
}

func (p *Publisher) newClient() (*kgo.Client, error) {
	cl, err := kgo.NewClient(options(p.cfg, hooks{p})...)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	return cl, nil
}

// Close waits for the call in progress and closes the client. Publish calls
// after Close fail with a transient error.
func (p *Publisher) Close() error {
	p.sem <- struct{}{}
	defer func() { <-p.sem }()
	if !p.closed {
		p.closed = true
		p.cl.Close()
	}
	return nil
}

// Ping reports whether a broker answers.
func (p *Publisher) Ping(ctx context.Context) error {
	p.clMu.Lock()
	cl := p.cl
	p.clMu.Unlock()
	if err := cl.Ping(ctx); err != nil {
		return fmt.Errorf("kafka: ping: %w", classify(err))
	}
	return nil
}

// Publish implements [broker.Publisher]. Each message becomes a record as
// watermill-kafka's DefaultMarshaler writes it (see the package doc), keyed
// by the message key and placed in the partition sarama's hash partitioner
// picks for it.
//
// Once a message fails, no later message of its topic and key is appended in
// this call: those fail with it, as skipped ([outbox.ErrSkipped]) unless
// their outcome is unknown too. A failure whose request may have reached the
// broker wraps [outbox.ErrUnknownOutcome]. A call returns within
// Config.DeliveryTimeout and a half second, earlier when ctx ends.
//
// In transactional mode the call is one Kafka transaction: a message is
// published (nil) when the transaction that carries it committed, and a
// failed one was not appended, or its transaction aborted. A message with
// outbox.Message.Reclaimed set that an earlier committed transaction
// carried returns nil and is not produced again; one that could not be
// looked up, or whose transaction's commit could not be confirmed, wraps
// [outbox.ErrInDoubt]. No error wraps outbox.ErrUnknownOutcome.
func (p *Publisher) Publish(ctx context.Context, msgs []*outbox.Message) []error {
	if len(msgs) == 0 {
		return nil
	}
	errs := make([]error, len(msgs))
	// The deadline counts the wait for the call before: DeliveryTimeout
	// bounds the call as its caller sees it.
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		for i := range errs {
			errs[i] = classify(fmt.Errorf("produce: waiting for the call before: %w", ctx.Err()))
		}
		return errs
	}
	defer func() { <-p.sem }()
	if p.closed {
		for i := range errs {
			errs[i] = errClosed
		}
		return errs
	}
	if p.cfg.Transactional {
		p.publishTxn(ctx, msgs, errs)
	} else {
		newCall(p, msgs, errs).run(ctx)
	}
	if slices.ContainsFunc(errs, func(err error) bool { return err != nil }) {
		return errs
	}
	return nil
}

// newRecord returns m as watermill-kafka's DefaultMarshaler writes it: the
// header outbox.HeaderMessageUUID holds the event ID and comes first, then
// one header per message header (but the UUID one) in map order; the value
// is the payload, the key the message key (none when empty). One buffer
// holds the key and every header value.
func newRecord(m *outbox.Message) *kgo.Record {
	id := m.ID.String()
	size := len(id) + len(m.Key)
	for k, v := range m.Headers {
		if k != outbox.HeaderMessageUUID {
			size += len(v)
		}
	}
	buf := make([]byte, 0, size)
	take := func(s string) []byte {
		at := len(buf)
		buf = append(buf, s...)
		return buf[at:len(buf):len(buf)]
	}
	hs := make([]kgo.RecordHeader, 1, 1+len(m.Headers))
	hs[0] = kgo.RecordHeader{Key: outbox.HeaderMessageUUID, Value: take(id)}
	for k, v := range m.Headers {
		if k != outbox.HeaderMessageUUID {
			hs = append(hs, kgo.RecordHeader{Key: k, Value: take(v)})
		}
	}
	rec := &kgo.Record{Topic: m.Topic, Value: m.Value, Headers: hs}
	if m.Key != "" {
		rec.Key = take(m.Key)
	}
	return rec
}

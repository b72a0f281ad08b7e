package kafka

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/outboxkit/outbox"
)

// recordBatchOverhead is the size of a record batch (v2) without its
// records: base offset, length, leader epoch, magic, CRC, attributes, last
// offset delta, two timestamps, producer ID and epoch, first sequence and
// record count. Kafka's message.max.bytes limits this plus the records.
const recordBatchOverhead = 61

// maxRequestBytes bounds the record batches of one produce request, well
// below sarama's and Kafka's default request limit of 100 MiB. Batches
// beyond it wait for the next request to their broker.
const maxRequestBytes = 64 << 20

// msgStatus is how far a message of a call got.
type msgStatus uint8

const (
	pending  msgStatus = iota // not sent, or refused for sure
	inFlight                  // sent; not known whether it was appended
	settled                   // has its outcome in errs
)

// call is the state of one Publish call. The fields below mu belong to the
// goroutine that runs the call; abandon reads errs and status under mu.
type call struct {
	p    *Publisher
	ctx  context.Context
	msgs []*outbox.Message

	mu        sync.Mutex
	errs      []error
	status    []msgStatus
	abandoned bool

	recs        []*sarama.Record    // nil once a message failed before sending
	failed      map[[2]string]error // the first failure of each topic and key
	unreachable error               // set once a batch failed as unreachable
	parts       []*callPart         // in (topic, partition) order once locked
	locked      int                 // parts[:locked] are held
	sentGen     uint64              // the latest producer generation sent in
}

// callPart is a partition within a call.
type callPart struct {
	part   *partition
	queue  []int // messages not in a batch yet, in call order
	single bool  // one message per batch, after a batch was too large
	cur    *chunk
}

// chunk is one record batch of a partition and its attempts.
type chunk struct {
	idx       []int
	batch     *sarama.RecordBatch
	gen       uint64 // producer generation of batch's ID, epoch and sequence
	due       bool   // to be sent in the next request to its leader
	needSeq   bool   // needs a producer ID, epoch and sequence before sending
	retries   int    // resends spent of the retry budget
	reinited  bool   // resent in a new epoch after a sequence error
	uncertain bool   // an attempt may have been appended
	refresh   bool   // refresh metadata before the resend
	backoff   bool   // wait the retry backoff before the resend
	err       error  // the last failure, classified
}

func newCall(p *Publisher, ctx context.Context, msgs []*outbox.Message) *call {
	return &call{
		p: p, ctx: ctx, msgs: msgs,
		errs:   make([]error, len(msgs)),
		status: make([]msgStatus, len(msgs)),
		recs:   make([]*sarama.Record, len(msgs)),
		failed: map[[2]string]error{},
	}
}

func (c *call) key(i int) [2]string { return [2]string{c.msgs[i].Topic, c.msgs[i].Key} }

// set records the outcome of message i.
func (c *call) set(i int, err error) {
	c.mu.Lock()
	c.errs[i], c.status[i] = err, settled
	c.mu.Unlock()
}

func (c *call) setStatus(idx []int, s msgStatus) {
	c.mu.Lock()
	for _, i := range idx {
		c.status[i] = s
	}
	c.mu.Unlock()
}

// fail fails message i with err, or skips it if an earlier message of its
// key failed. Either way, later messages of its key are skipped.
func (c *call) fail(i int, err error) {
	keyed := c.msgs[i].Key != ""
	if cause := c.failed[c.key(i)]; keyed && cause != nil {
		err = skipped(cause)
	} else if keyed {
		c.failed[c.key(i)] = err
	}
	c.recs[i] = nil
	c.set(i, err)
	if errors.Is(err, outbox.ErrUnreachable) && c.unreachable == nil {
		c.unreachable = err
	}
}

// stop fails everything not settled yet when the call cannot go on: a
// batch whose fate is unknown fails as unknown, the rest as not sent.
func (c *call) stop(cause error) {
	cause = fmt.Errorf("produce: %w", cause)
	for _, cp := range c.parts {
		if cp.cur != nil {
			c.failChunk(cp, cause)
		}
	}
	for i := range c.msgs {
		c.mu.Lock()
		s := c.status[i]
		c.mu.Unlock()
		if s != settled {
			c.fail(i, cause)
		}
	}
}

// run sends the call in rounds: each round sends every partition's next
// batch, one request per leader broker, and waits for all of them. Most
// calls take one round.
func (c *call) run() {
	defer c.finish()
	c.plan()
	if !c.lock() {
		c.stop(c.ctx.Err())
		return
	}
	for {
		ready := c.next()
		if len(ready) == 0 {
			return
		}
		if err := c.ctx.Err(); err != nil {
			c.stop(err)
			return
		}
		c.round(ready)
		c.between()
	}
}

// plan assigns every message that is still to be sent to its partition.
func (c *call) plan() {
	var topics []string
	byTopic := map[string][]int{}
	for i, m := range c.msgs {
		if c.recs[i] == nil {
			continue
		}
		if _, ok := byTopic[m.Topic]; !ok {
			topics = append(topics, m.Topic)
		}
		byTopic[m.Topic] = append(byTopic[m.Topic], i)
	}
	parts := map[topicPartition]*callPart{}
	for _, topic := range topics {
		idx := byTopic[topic]
		partitions, err := c.p.client.Partitions(topic)
		if err == nil && len(partitions) == 0 {
			err = sarama.ErrLeaderNotAvailable
		}
		assigned := make([]int32, len(idx))
		if err == nil {
			keys := make([][]byte, len(idx))
			for j, i := range idx {
				keys[j] = c.recs[i].Key
			}
			err = c.p.assign(topic, partitions, keys, assigned)
		}
		if err != nil {
			err = classify(fmt.Errorf("partitions of %q: %w", topic, err))
			for _, i := range idx {
				c.fail(i, err)
			}
			continue
		}
		for j, i := range idx {
			tp := topicPartition{topic, assigned[j]}
			cp := parts[tp]
			if cp == nil {
				cp = &callPart{part: c.p.partition(tp)}
				parts[tp] = cp
				c.parts = append(c.parts, cp)
			}
			cp.queue = append(cp.queue, i)
		}
	}
	slices.SortFunc(c.parts, func(a, b *callPart) int { return a.part.tp.compare(b.part.tp) })
}

// lock takes the call's partitions in a fixed order, so that calls sharing
// partitions never wait for each other in a cycle.
func (c *call) lock() bool {
	for _, cp := range c.parts {
		select {
		case cp.part.sem <- struct{}{}:
			c.locked++
		case <-c.ctx.Done():
			return false
		}
	}
	return true
}

// finish moves to a new epoch if the caller was told that a batch's fate is
// unknown, then lets the next call have the partitions.
func (c *call) finish() {
	c.mu.Lock()
	abandoned := c.abandoned
	c.mu.Unlock()
	if abandoned && c.sentGen != 0 {
		c.p.prod.bump(c.sentGen, false)
	}
	for _, cp := range c.parts[:c.locked] {
		<-cp.part.sem
	}
}

// next returns the partitions with a batch to send, building the next batch
// of those whose last one is done.
func (c *call) next() []*callPart {
	var ready []*callPart
	for _, cp := range c.parts {
		if cp.cur == nil {
			cp.cur = c.build(cp)
		}
		if cp.cur != nil && cp.cur.due {
			ready = append(ready, cp)
		}
	}
	return ready
}

// build takes the next batch of cp off its queue: messages of keys that have
// not failed, up to MaxMessageBytes.
func (c *call) build(cp *callPart) *chunk {
	var idx []int
	size := recordBatchOverhead
	n := 0
	for _, i := range cp.queue {
		switch {
		case c.msgs[i].Key != "" && c.failed[c.key(i)] != nil:
			c.fail(i, c.failed[c.key(i)]) // skipped
			n++
			continue
		case c.unreachable != nil:
			// Waiting for the same timeouts again would only delay the
			// report of an outage.
			c.fail(i, fmt.Errorf("not sent: %w", c.unreachable))
			n++
			continue
		}
		rs := recordSize(c.recs[i], len(idx))
		if len(idx) > 0 && (cp.single || size+rs > c.p.maxBytes) {
			break
		}
		idx = append(idx, i)
		size += rs
		n++
	}
	cp.queue = cp.queue[n:]
	if len(idx) == 0 {
		return nil
	}
	recs := make([]*sarama.Record, len(idx))
	for j, i := range idx {
		recs[j] = c.recs[i]
		recs[j].OffsetDelta = int64(j)
		recs[j].TimestampDelta = 0
	}
	now := time.Now().Truncate(time.Millisecond)
	return &chunk{
		idx: idx, due: true, needSeq: true,
		batch: &sarama.RecordBatch{
			Version:         2,
			Codec:           sarama.CompressionNone,
			FirstTimestamp:  now,
			MaxTimestamp:    now,
			LastOffsetDelta: int32(len(recs) - 1),
			Records:         recs,
		},
	}
}

// request is one produce request to a broker.
type request struct {
	broker *sarama.Broker
	parts  []*callPart
	bytes  int
	resp   *sarama.ProduceResponse
	err    error
}

// round sends the due batches, one request per leader broker, and settles
// what the brokers answered.
func (c *call) round(ready []*callPart) {
	producerErr := c.p.ensureProducer()
	byBroker := map[int32]*request{}
	var reqs []*request
	for _, cp := range ready {
		ch := cp.cur
		if ch.needSeq && producerErr != nil {
			c.failChunk(cp, classify(producerErr))
			continue
		}
		b, err := c.p.client.Leader(cp.part.tp.topic, cp.part.tp.partition)
		if err != nil {
			c.retry(cp, classify(fmt.Errorf("leader: %w", err)), false, true)
			continue
		}
		r := byBroker[b.ID()]
		size := ch.bytes()
		if r != nil && r.bytes+size > maxRequestBytes {
			continue // stays due: next round
		}
		if r == nil {
			r = &request{broker: b}
			byBroker[b.ID()] = r
			reqs = append(reqs, r)
		}
		r.parts = append(r.parts, cp)
		r.bytes += size
		if ch.needSeq {
			c.sequence(cp)
		}
		ch.due, ch.refresh, ch.backoff = false, false, false
		c.sentGen = max(c.sentGen, ch.gen)
		c.setStatus(ch.idx, inFlight)
	}
	switch len(reqs) {
	case 0:
	case 1:
		c.send(reqs[0])
	default:
		var wg sync.WaitGroup
		for _, r := range reqs {
			wg.Go(func() { c.send(r) })
		}
		wg.Wait()
	}
	for _, r := range reqs {
		for _, cp := range r.parts {
			c.settle(cp, r)
		}
	}
}

// sequence gives cp's batch the producer ID and epoch and the partition's
// next sequence number; a new generation starts the partition over at 0.
func (c *call) sequence(cp *callPart) {
	pr := &c.p.prod
	pr.mu.Lock()
	defer pr.mu.Unlock()
	part := cp.part
	if part.gen != pr.gen {
		part.gen, part.seq = pr.gen, 0
	}
	ch := cp.cur
	ch.batch.ProducerID, ch.batch.ProducerEpoch, ch.batch.FirstSequence = pr.id, pr.epoch, part.seq
	ch.gen, ch.needSeq = pr.gen, false
}

func (ch *chunk) bytes() int {
	size := recordBatchOverhead
	for j, r := range ch.batch.Records {
		size += recordSize(r, j)
	}
	return size
}

func (c *call) send(r *request) {
	req := &sarama.ProduceRequest{
		RequiredAcks: c.p.conf.Producer.RequiredAcks,
		Timeout:      int32(c.p.conf.Producer.Timeout / time.Millisecond),
		Version:      c.p.version,
	}
	for _, cp := range r.parts {
		req.AddBatch(cp.part.tp.topic, cp.part.tp.partition, cp.cur.batch)
	}
	r.resp, r.err = r.broker.Produce(req)
	if r.err != nil {
		// sarama keeps a connection whose read timed out and fails every
		// later request on it; a new connection starts clean.
		_ = r.broker.Close()
	}
}

// settle handles the answer for cp's batch in r.
func (c *call) settle(cp *callPart, r *request) {
	ch := cp.cur
	if r.err != nil {
		err := classify(fmt.Errorf("produce: %w", r.err))
		c.retry(cp, err, !notSent(r.err), true)
		return
	}
	block := r.resp.GetBlock(cp.part.tp.topic, cp.part.tp.partition)
	if block == nil {
		c.retry(cp, classify(fmt.Errorf("produce: %w", sarama.ErrIncompleteResponse)), true, true)
		return
	}
	kerr := block.Err
	err := classify(fmt.Errorf("produce: %w", kerr))
	switch kerr {
	case sarama.ErrNoError, sarama.ErrDuplicateSequenceNumber:
		// A duplicate is a resend of a batch the broker already has.
		c.succeed(cp)
	case sarama.ErrMessageSizeTooLarge, sarama.ErrMessageSetSizeTooLarge:
		if len(ch.idx) > 1 && !ch.uncertain {
			// Only a message alone in its batch is surely too large
			// itself: send the others again one by one to find out.
			c.setStatus(ch.idx, pending)
			cp.queue = append(ch.idx, cp.queue...)
			cp.single, cp.cur = true, nil
			return
		}
		c.failChunk(cp, err)
	case sarama.ErrInvalidTopic, sarama.ErrInvalidRecord:
		c.failChunk(cp, err)
	case sarama.ErrNotLeaderForPartition, sarama.ErrLeaderNotAvailable, sarama.ErrUnknownTopicOrPartition,
		sarama.ErrNotEnoughReplicas, sarama.ErrKafkaStorageError:
		// Refused before the append.
		c.retry(cp, err, false, true)
	case sarama.ErrRequestTimedOut, sarama.ErrNotEnoughReplicasAfterAppend:
		// Appended by the leader, not known to be replicated: the
		// resend tells, as a duplicate.
		c.retry(cp, err, true, false)
	case sarama.ErrOutOfOrderSequenceNumber, sarama.ErrUnknownProducerID,
		sarama.ErrInvalidProducerEpoch, sarama.ErrProducerFenced:
		newID := kerr == sarama.ErrInvalidProducerEpoch || kerr == sarama.ErrProducerFenced
		if ch.uncertain || ch.reinited {
			// The next batch starts afresh too.
			c.failChunk(cp, err)
			c.p.prod.bump(ch.gen, newID)
			return
		}
		// The broker's producer state is not ours: refused, so send the
		// batch again once in a fresh epoch (or under a new producer ID
		// when the broker knows a later epoch than ours).
		c.p.prod.bump(ch.gen, newID)
		c.setStatus(ch.idx, pending)
		ch.reinited, ch.needSeq, ch.due, ch.err = true, true, true, err
	default:
		// Nothing says whether the broker appended the batch.
		ch.uncertain = true
		c.failChunk(cp, err)
	}
}

// retry schedules a resend of cp's batch with the same sequence numbers if
// the retry budget allows, else fails it. uncertain says whether the attempt
// may have been appended; refresh whether to refresh metadata first.
func (c *call) retry(cp *callPart, err error, uncertain, refresh bool) {
	ch := cp.cur
	ch.err = err
	ch.uncertain = ch.uncertain || uncertain
	if !ch.uncertain {
		c.setStatus(ch.idx, pending)
	}
	if ch.retries >= c.p.conf.Producer.Retry.Max {
		c.failChunk(cp, err)
		return
	}
	ch.retries++
	ch.due, ch.refresh, ch.backoff = true, refresh, true
}

func (c *call) succeed(cp *callPart) {
	ch := cp.cur
	n := int64(len(ch.idx))
	cp.part.seq = int32((int64(cp.part.seq) + n) % math.MaxInt32)
	for _, i := range ch.idx {
		c.set(i, nil)
	}
	cp.cur = nil
}

// failChunk fails cp's batch with err. When it may have been appended, every
// message gets the error (none is skipped: each may be on the topic) and
// the partition goes on in a new epoch.
func (c *call) failChunk(cp *callPart, err error) {
	ch := cp.cur
	cp.cur = nil
	if !ch.uncertain {
		for _, i := range ch.idx {
			c.fail(i, err)
		}
		return
	}
	err = unknownOutcome(err)
	for _, i := range ch.idx {
		if k := c.key(i); c.msgs[i].Key != "" && c.failed[k] == nil {
			c.failed[k] = err
		}
		c.set(i, err)
	}
	if errors.Is(err, outbox.ErrUnreachable) && c.unreachable == nil {
		c.unreachable = err
	}
	c.p.prod.bump(ch.gen, false)
}

// between refreshes metadata and waits the retry backoff before resends.
func (c *call) between() {
	if c.ctx.Err() != nil {
		return
	}
	var topics []string
	for _, cp := range c.parts {
		if ch := cp.cur; ch != nil && ch.due && ch.refresh && !slices.Contains(topics, cp.part.tp.topic) {
			topics = append(topics, cp.part.tp.topic)
		}
	}
	if len(topics) > 0 {
		if err := c.p.client.RefreshMetadata(topics...); err != nil {
			// The cluster does not answer: a resend would only wait for
			// the same timeouts again.
			for _, cp := range c.parts {
				if ch := cp.cur; ch != nil && ch.due && ch.refresh {
					c.failChunk(cp, ch.err)
				}
			}
		}
	}
	backoff := slices.ContainsFunc(c.parts, func(cp *callPart) bool { return cp.cur != nil && cp.cur.due && cp.cur.backoff })
	if backoff {
		t := time.NewTimer(c.p.conf.Producer.Retry.Backoff)
		defer t.Stop()
		select {
		case <-t.C:
		case <-c.ctx.Done():
		}
	}
}

// notSent reports whether a failed request surely never reached the broker
// whole: the connection could not be made, or writing the request failed (a
// partial request is never processed).
func notSent(err error) bool {
	if errors.Is(err, sarama.ErrNotConnected) {
		return true
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return opErr.Op == "dial" || opErr.Op == "write"
	}
	var encErr sarama.PacketEncodingError
	var cfgErr sarama.ConfigurationError
	return errors.As(err, &encErr) || errors.As(err, &cfgErr) || errors.Is(err, sarama.ErrUnsupportedVersion)
}

// recordSize is the encoded size of r at offsetDelta in a record batch, with
// a timestamp delta of 0.
func recordSize(r *sarama.Record, offsetDelta int) int {
	body := 1 + varintLen(0) + varintLen(int64(offsetDelta)) +
		bytesLen(r.Key) + bytesLen(r.Value) + varintLen(int64(len(r.Headers)))
	for _, h := range r.Headers {
		body += bytesLen(h.Key) + bytesLen(h.Value)
	}
	return varintLen(int64(body)) + body
}

func bytesLen(b []byte) int {
	if b == nil {
		return varintLen(-1)
	}
	return varintLen(int64(len(b))) + len(b)
}

// varintLen is the size of x as a zigzag varint.
func varintLen(x int64) int {
	ux := uint64(x) << 1
	if x < 0 {
		ux = ^ux
	}
	n := 1
	for ux >= 0x80 {
		ux >>= 7
		n++
	}
	return n
}

package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A progress record names the events its transaction carries: its value is
// progressFormat followed by their 16-byte IDs, its key the transactional
// ID (for people who read the topic).
const progressFormat byte = 1

func encodeProgress(ids []uuid.UUID) []byte {
	b := make([]byte, 1, 1+16*len(ids))
	b[0] = progressFormat
	for _, id := range ids {
		b = append(b, id[:]...)
	}
	return b
}

// decodeProgress calls found for each ID in a progress record's value; it
// skips values of another format.
func decodeProgress(v []byte, found func(uuid.UUID)) {
	if len(v) == 0 || v[0] != progressFormat || (len(v)-1)%16 != 0 {
		return
	}
	for b := v[1:]; len(b) > 0; b = b[16:] {
		found(uuid.UUID(b[:16]))
	}
}

// ensureProgressTopic creates the progress topic when it is missing and
// checks that it has one partition. A topic that exists needs no right to
// create topics. It creates before it looks: the client allows topics to be
// created automatically, and a look at a missing topic would create it with
// the broker's default partition count.
func (p *Publisher) ensureProgressTopic(ctx context.Context) error {
	topic := p.cfg.ProgressTopic
	adm := kadm.NewClient(p.cl)
	configs := map[string]*string{
		"cleanup.policy":         ptr("delete"),
		"retention.ms":           ptr(strconv.FormatInt(progressRetention.Milliseconds(), 10)),
		"message.timestamp.type": ptr("LogAppendTime"),
	}
	resp, err := adm.CreateTopic(ctx, 1, -1, configs, topic)
	if err == nil {
		err = resp.Err
	}
	switch {
	case err == nil, errors.Is(err, kerr.TopicAlreadyExists),
		errors.Is(err, kerr.TopicAuthorizationFailed), errors.Is(err, kerr.ClusterAuthorizationFailed):
	default:
		return fmt.Errorf("create progress topic %s: %w", topic, err)
	}
	// A topic just created takes a moment to appear in the metadata.
	var tds kadm.TopicDetails
	for {
		tds, err = adm.ListTopics(ctx, topic)
		if err == nil {
			err = tds.Error()
		}
		if !errors.Is(err, kerr.UnknownTopicOrPartition) || ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("progress topic %s: %w", topic, err)
	}
	if n := len(tds[topic].Partitions); n != 1 {
		return fmt.Errorf("progress topic %s has %d partitions; it must have one", topic, n)
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// appendProgress produces the progress record of the open transaction and
// returns its offset.
func (p *Publisher) appendProgress(ctx context.Context, ids []uuid.UUID) (int64, error) {
	rec := &kgo.Record{Topic: p.cfg.ProgressTopic, Key: []byte(p.cfg.TransactionalID), Value: encodeProgress(ids)}
	var perr error
	done := make(chan struct{})
	p.cl.Produce(ctx, rec, func(_ *kgo.Record, err error) { perr = err; close(done) })
	if err := p.cl.Flush(ctx); err != nil {
		// Give the record up; only a new client can end the
		// transaction then.
		p.abortBuffered(done)
		p.renew = true
		return 0, fmt.Errorf("progress record: %w", err)
	}
	<-done
	if perr != nil {
		return 0, fmt.Errorf("progress record: %w", perr)
	}
	return rec.Offset, nil
}

// published returns which of ids a committed transaction carried, reading
// the progress appended since sinceMilli (Unix milliseconds, broker time). It reads up to the end of the topic as
// it was when called, so it waits until every transaction that appended
// progress before then is committed or aborted: a crashed publisher's
// transaction is aborted by the coordinator after TransactionTimeout, or at
// once when a publisher with its TransactionalID starts.
func (p *Publisher) published(ctx context.Context, ids map[uuid.UUID]bool, sinceMilli int64) (map[uuid.UUID]bool, error) {
	topic := p.cfg.ProgressTopic
	adm := kadm.NewClient(p.cl)
	starts, err := adm.ListOffsetsAfterMilli(ctx, sinceMilli, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("look-up: %w", err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("look-up: %w", err)
	}
	start, _ := starts.Lookup(topic, 0)
	end, _ := ends.Lookup(topic, 0)
	found := map[uuid.UUID]bool{}
	err = p.readProgress(ctx, start.Offset, func(r *kgo.Record) bool {
		if !r.Attrs.IsControl() {
			decodeProgress(r.Value, func(id uuid.UUID) {
				if ids[id] {
					found[id] = true
				}
			})
		}
		// Every record is followed by a control record, or is one: the
		// last one before end is delivered, or one after it, once its
		// transaction ended.
		return r.Offset+1 < end.Offset
	}, start.Offset >= end.Offset)
	if err != nil {
		return nil, fmt.Errorf("look-up: %w", err)
	}
	return found, nil
}

// committedAt reports whether the progress record at offset off is
// committed: read with read_committed from there, the first record is that
// one if its transaction committed; else one after it (the abort marker at
// the latest), once its transaction ended.
func (p *Publisher) committedAt(ctx context.Context, off int64) (bool, error) {
	var committed bool
	err := p.readProgress(ctx, off, func(r *kgo.Record) bool {
		committed = r.Offset == off && !r.Attrs.IsControl()
		return false
	}, false)
	return committed, err
}

// readProgress reads the progress topic with read_committed from offset
// from, control records included, and hands each record to more until it
// returns false. It reads nothing when none is set.
func (p *Publisher) readProgress(ctx context.Context, from int64, more func(*kgo.Record) bool, none bool) error {
	if none {
		return nil
	}
	netTimeout := min(maxNetTimeout, p.cfg.DeliveryTimeout/4)
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(p.cfg.Brokers...),
		kgo.ClientID(p.cfg.ClientID),
		kgo.DialTimeout(netTimeout),
		kgo.RequestTimeoutOverhead(netTimeout),
		kgo.RetryTimeout(p.cfg.DeliveryTimeout),
		kgo.MetadataMinAge(metadataMinAge),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{p.cfg.ProgressTopic: {0: kgo.NewOffset().At(from)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(100*time.Millisecond),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		var fetchErr error
		fs.EachError(func(_ string, _ int32, err error) { fetchErr = err })
		if fetchErr != nil {
			return fetchErr
		}
		for it := fs.RecordIter(); !it.Done(); {
			if !more(it.Next()) {
				return nil
			}
		}
	}
}

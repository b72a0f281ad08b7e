package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/store"
)

// auditPage is how many table rows one query of the audit reads.
const auditPage = 10000

// auditStall bounds how long the audit waits for the topic to deliver the
// next records before it gives up.
const auditStall = 30 * time.Second

var auditCommand = &command{
	name: "audit",
	summary: "read a topic back from Kafka and compare it with the table: events missing from the topic, " +
		"duplicates, per-key order; exit 3 when events are missing or out of order",
	setup: func(fs *flag.FlagSet) func(context.Context, *invocation) error {
		db := dbFlags(fs)
		brokers := brokersFlag(fs)
		topic := fs.String("topic", "", "the topic to audit (required)")
		since := fs.String("since", "", "check only events published at or after this time: RFC 3339 or a duration ago (2h, 3d)")
		show := fs.Int("show", 20, "most event IDs listed per problem")
		return func(ctx context.Context, inv *invocation) error {
			if *topic == "" {
				return usagef("--topic is required")
			}
			d, err := db.openStore(ctx)
			if err != nil {
				return err
			}
			defer d.Close()
			now, err := d.store.Now(ctx)
			if err != nil {
				return err
			}
			sinceT, err := parseTime("--since", *since, now)
			if err != nil {
				return err
			}
			// The table first: every event it shows as published was on the
			// topic before it was marked, so before the end offsets that the
			// topic is read up to.
			a := &audit{table: map[uuid.UUID]*auditEvent{}, count: map[uuid.UUID]int{}, last: map[string]keyPos{}}
			if err := a.readTable(ctx, d.store, store.PublishedFilter{Topic: *topic, Since: sinceT}); err != nil {
				return err
			}
			if err := a.readTopic(ctx, inv.stderr, strings.Split(*brokers, ","), *topic); err != nil {
				return err
			}
			return a.report(inv.stdout, d.table, *topic, *show)
		}
	},
}

type auditEvent struct {
	seq int64
	key string
}

// keyPos is where a key was last seen on the topic, by first occurrences.
type keyPos struct {
	partition int32
	seq       int64
}

type audit struct {
	table map[uuid.UUID]*auditEvent
	// count is how often each event of the table was on the topic.
	count map[uuid.UUID]int
	last  map[string]keyPos

	records, replayed, foreign, unknown int
	outOfOrder, splitKeys               []string
}

func (a *audit) readTable(ctx context.Context, st store.Admin, f store.PublishedFilter) error {
	f.Limit, f.OmitPayload = auditPage, true
	for {
		rows, err := st.ListPublished(ctx, f)
		if err != nil {
			return err
		}
		for _, r := range rows {
			a.table[r.ID] = &auditEvent{seq: r.Seq, key: r.Key}
		}
		if len(rows) < f.Limit {
			return nil
		}
		f.After = &rows[len(rows)-1]
	}
}

// readTopic reads every partition of topic from its start up to the end
// offsets it had when the audit began.
func (a *audit) readTopic(ctx context.Context, progress io.Writer, brokers []string, topic string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DialTimeout(5*time.Second), kgo.RetryTimeout(15*time.Second))
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	defer cl.Close()
	pingCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := cl.Ping(pingCtx); err != nil {
		return fmt.Errorf("kafka at %s: %w", strings.Join(brokers, ","), err)
	}
	adm := kadm.NewClient(cl)
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return fmt.Errorf("topic %q does not exist", topic)
	}
	if err != nil {
		return fmt.Errorf("topic %s: start offsets: %w", topic, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("topic %s: end offsets: %w", topic, err)
	}
	from := map[int32]kgo.Offset{}
	remaining := map[int32]int64{} // partition → end offset still to reach
	var total int64
	ends.Each(func(o kadm.ListedOffset) {
		start, _ := starts.Lookup(topic, o.Partition)
		if o.Offset > start.Offset {
			from[o.Partition] = kgo.NewOffset().At(start.Offset)
			remaining[o.Partition] = o.Offset
			total += o.Offset - start.Offset
		}
	})
	if len(from) == 0 {
		return nil
	}
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: from})
	lastReport := time.Now()
	for len(remaining) > 0 {
		pollCtx, cancel := context.WithTimeout(ctx, auditStall)
		fetches := cl.PollFetches(pollCtx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if fetches.Empty() {
			return fmt.Errorf("topic %s: no records for %s with %d partitions unfinished", topic, auditStall, len(remaining))
		}
		for _, fe := range fetches.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) {
				return fmt.Errorf("topic %s: partition %d: %w", topic, fe.Partition, fe.Err)
			}
		}
		fetches.EachRecord(func(r *kgo.Record) {
			end, ok := remaining[r.Partition]
			if !ok || r.Offset >= end {
				return
			}
			a.record(r)
			if r.Offset+1 >= end {
				delete(remaining, r.Partition)
			}
		})
		if time.Since(lastReport) >= 2*time.Second {
			fmt.Fprintf(progress, "audit: read %d of %d records\n", a.records, total)
			lastReport = time.Now()
		}
	}
	return nil
}

func (a *audit) record(r *kgo.Record) {
	a.records++
	var id uuid.UUID
	var parsed bool
	for _, h := range r.Headers {
		switch h.Key {
		case headerReplayID:
			a.replayed++
			return
		case outbox.HeaderMessageUUID:
			var err error
			id, err = uuid.Parse(string(h.Value))
			parsed = err == nil
		}
	}
	if !parsed {
		a.foreign++
		return
	}
	ev, ok := a.table[id]
	if !ok {
		a.unknown++
		return
	}
	a.count[id]++
	if a.count[id] > 1 || ev.key == "" {
		return
	}
	// Per-key order by first occurrences: a redelivered copy of an event
	// (a counted duplicate) does not break the order consumers see once they
	// dedupe.
	prev, seen := a.last[ev.key]
	switch {
	case !seen:
	case prev.partition != r.Partition:
		a.splitKeys = append(a.splitKeys, fmt.Sprintf("%s  key %q on partitions %d and %d", id, ev.key, prev.partition, r.Partition))
	case ev.seq < prev.seq:
		a.outOfOrder = append(a.outOfOrder, fmt.Sprintf("%s  key %q: seq %d after seq %d", id, ev.key, ev.seq, prev.seq))
		return
	}
	a.last[ev.key] = keyPos{r.Partition, ev.seq}
}

func (a *audit) report(w io.Writer, table, topic string, show int) error {
	var lost []uuid.UUID
	dups, extra := 0, 0
	for id := range a.table {
		switch n := a.count[id]; {
		case n == 0:
			lost = append(lost, id)
		case n > 1:
			dups++
			extra += n - 1
		}
	}
	slices.SortFunc(lost, func(x, y uuid.UUID) int { return cmp.Compare(a.table[x].seq, a.table[y].seq) })
	missing := make([]string, len(lost))
	for i, id := range lost {
		missing[i] = fmt.Sprintf("%s  key %q seq %d", id, a.table[id].key, a.table[id].seq)
	}
	fmt.Fprintf(w, "audit of topic %s against table %s\n", topic, table)
	fmt.Fprintf(w, "  table: %d published events\n", len(a.table))
	fmt.Fprintf(w, "  topic: %d records (%d replayed, %d without an event ID, %d not in the table or before --since)\n",
		a.records, a.replayed, a.foreign, a.unknown)
	list := func(title string, items []string) {
		fmt.Fprintf(w, "  %s: %d\n", title, len(items))
		for i, s := range items {
			if i == show {
				fmt.Fprintf(w, "    ... and %d more\n", len(items)-show)
				break
			}
			fmt.Fprintf(w, "    %s\n", s)
		}
	}
	list("missing from the topic", missing)
	fmt.Fprintf(w, "  duplicates: %d events delivered more than once (%d extra copies)\n", dups, extra)
	list("out of order within their key", a.outOfOrder)
	list("keys on several partitions", a.splitKeys)
	if len(missing)+len(a.outOfOrder)+len(a.splitKeys) > 0 {
		return fmt.Errorf("%w: %d missing, %d out of order, %d on several partitions", errFindings,
			len(missing), len(a.outOfOrder), len(a.splitKeys))
	}
	fmt.Fprintln(w, "OK: every published event is on the topic, in order within its key")
	return nil
}

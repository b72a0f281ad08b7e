package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker/kafka"
	"github.com/outboxkit/outbox/internal/wire"
	"github.com/outboxkit/outbox/store"
)

// Provenance headers of replayed messages, besides the relay's own (the
// event ID stays the original's, so consumers that dedupe on it see a replay
// as the event they already have).
const (
	// headerReplayID is the same for every message of one replay run.
	headerReplayID = "outbox_replay_id"
	// headerOriginalPublishedAt is when the relay first published the
	// event, RFC 3339 with nanoseconds, UTC, by the database clock.
	headerOriginalPublishedAt = "outbox_original_published_at"
	// headerOriginalTopic is set when --to-topic sends the event elsewhere.
	headerOriginalTopic = "outbox_original_topic"
)

func brokersFlag(fs *flag.FlagSet) *string {
	return fs.String("brokers", "127.0.0.1:9092", "Kafka brokers, comma-separated host:port [$OUTBOX_BROKERS]")
}

func newPublisher(brokers string) (*kafka.Publisher, error) {
	list := strings.Split(brokers, ",")
	pub, err := kafka.New(kafka.Config{Brokers: list})
	if err != nil {
		return nil, fmt.Errorf("kafka at %s: %w", brokers, err)
	}
	return pub, nil
}

var replayCommand = &command{
	name: "replay",
	summary: "publish delivered events again, rate-limited, with provenance headers " +
		"(" + headerReplayID + ", " + headerOriginalPublishedAt + ")",
	setup: func(fs *flag.FlagSet) func(context.Context, *invocation) error {
		db := dbFlags(fs)
		brokers := brokersFlag(fs)
		aggregate := fs.String("aggregate", "", "replay the events of this aggregate, as type:id")
		eventType := fs.String("type", "", "replay the events of this event type")
		since := fs.String("since", "", "replay events published at or after this time: RFC 3339 or a duration ago (2h, 3d)")
		until := fs.String("until", "", "replay events published before this time (RFC 3339 or a duration ago); defaults to now")
		toTopic := fs.String("to-topic", "", "publish to this topic instead of each event's own")
		rate := fs.Float64("rate", 100, "most events per second; 0 means no limit")
		batch := fs.Int("batch", 100, "most events per broker request")
		dryRun := fs.Bool("dry-run", false, "count the events that would be replayed, publish nothing")
		return func(ctx context.Context, inv *invocation) error {
			var f store.PublishedFilter
			if *aggregate != "" {
				var ok bool
				f.AggregateType, f.AggregateID, ok = strings.Cut(*aggregate, ":")
				if !ok || f.AggregateType == "" || f.AggregateID == "" {
					return usagef("--aggregate %q: want type:id", *aggregate)
				}
			}
			f.EventType = *eventType
			switch {
			case *aggregate == "" && *eventType == "" && *since == "" && *until == "":
				return usagef("select the events with --aggregate, --type or --since/--until")
			case *toTopic != "" && !outbox.ValidTopic(*toTopic):
				return usagef("--to-topic %q is not a valid topic name", *toTopic)
			case *rate < 0 || *batch <= 0:
				return usagef("--rate must not be negative and --batch must be positive")
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
			if f.Since, err = parseTime("--since", *since, now); err != nil {
				return err
			}
			// Without --until the replay stops at its start, so that events
			// published meanwhile do not keep it going.
			f.Until = now
			if *until != "" {
				if f.Until, err = parseTime("--until", *until, now); err != nil {
					return err
				}
			}
			f.Limit = *batch
			rp := &replayer{inv: inv, id: uuid.New(), toTopic: *toTopic, rate: *rate, f: f}
			if !*dryRun {
				if rp.pub, err = newPublisher(*brokers); err != nil {
					return err
				}
				defer rp.pub.Close()
			}
			return rp.run(ctx, d.store)
		}
	},
}

type replayer struct {
	inv     *invocation
	pub     *kafka.Publisher // nil on a dry run
	id      uuid.UUID
	toTopic string
	rate    float64
	f       store.PublishedFilter

	start time.Time
	sent  int
}

func (rp *replayer) run(ctx context.Context, st store.Admin) error {
	rp.start = time.Now()
	lastReport := rp.start
	for {
		rows, err := st.ListPublished(ctx, rp.f)
		if err != nil {
			return fmt.Errorf("after %d replayed: %w", rp.sent, err)
		}
		if len(rows) == 0 {
			break
		}
		if rp.pub == nil {
			rp.sent += len(rows)
		} else if err := rp.publish(ctx, rows); err != nil {
			return err
		}
		rp.f.After = &rows[len(rows)-1]
		if time.Since(lastReport) >= time.Second {
			fmt.Fprintf(rp.inv.stderr, "replay: %d events so far (%.0f/s)\n", rp.sent, float64(rp.sent)/time.Since(rp.start).Seconds())
			lastReport = time.Now()
		}
	}
	if rp.pub == nil {
		fmt.Fprintf(rp.inv.stdout, "dry run: %d events would be replayed\n", rp.sent)
		return nil
	}
	fmt.Fprintf(rp.inv.stdout, "replayed %d events in %s, %s=%s\n", rp.sent, time.Since(rp.start).Round(time.Millisecond), headerReplayID, rp.id)
	return nil
}

// publish sends rows in chunks paced to the rate. Each chunk is one Publish
// call, which keeps the order of each key, and the pages come in the order
// the relay published them.
func (rp *replayer) publish(ctx context.Context, rows []store.Row) error {
	chunk := len(rows)
	if rp.rate > 0 {
		// About ten calls per second at most, so that the pace is smooth.
		chunk = max(1, min(chunk, int(rp.rate/10)))
	}
	for len(rows) > 0 {
		n := min(chunk, len(rows))
		if rp.rate > 0 {
			due := rp.start.Add(time.Duration(float64(rp.sent) / rp.rate * float64(time.Second)))
			select {
			case <-ctx.Done():
				return fmt.Errorf("after %d replayed: %w", rp.sent, ctx.Err())
			case <-time.After(time.Until(due)):
			}
		}
		msgs := make([]*outbox.Message, n)
		for i := range n {
			msgs[i] = rp.message(&rows[i])
		}
		for i, err := range rp.pub.Publish(ctx, msgs) {
			if err != nil {
				return fmt.Errorf("after %d replayed: event %s: %w", rp.sent+i, msgs[i].ID, err)
			}
		}
		rp.sent += n
		rows = rows[n:]
	}
	return nil
}

// message builds the relay's message for r, so that a replay has the wire
// format of the original, plus the provenance headers.
func (rp *replayer) message(r *store.Row) *outbox.Message {
	m := wire.Message(&r.Record)
	m.Headers[headerReplayID] = rp.id.String()
	m.Headers[headerOriginalPublishedAt] = r.PublishedAt.UTC().Format(time.RFC3339Nano)
	if rp.toTopic != "" {
		m.Headers[headerOriginalTopic] = m.Topic
		m.Topic = rp.toTopic
	}
	return m
}

// parseTime reads an RFC 3339 time or a duration before now (the database
// clock); "" is the zero time.
func parseTime(name, s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	var ago duration
	if err := ago.Set(s); err != nil {
		return time.Time{}, usagef("%s %q: want an RFC 3339 time (2025-06-01T12:00:00Z) or a duration ago (90m, 2d)", name, s)
	}
	return now.Add(-time.Duration(ago)), nil
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/outboxkit/outbox/store"
)

var statusCommand = &command{
	name:    "status",
	summary: "show the backlog by topic: pending, oldest pending age, parked, publish rates of the last 1/5/15 minutes",
	setup: func(fs *flag.FlagSet) func(context.Context, *invocation) error {
		db := dbFlags(fs)
		asJSON := fs.Bool("json", false, "print JSON, for scripts")
		return func(ctx context.Context, inv *invocation) error {
			d, err := db.openStore(ctx)
			if err != nil {
				return err
			}
			defer d.Close()
			now, err := d.store.Now(ctx)
			if err != nil {
				return err
			}
			topics, err := d.store.TopicStats(ctx)
			if err != nil {
				return err
			}
			total := store.TopicStats{Topic: "TOTAL"}
			for _, t := range topics {
				total.Pending += t.Pending
				total.OldestPendingAge = max(total.OldestPendingAge, t.OldestPendingAge)
				total.Parked += t.Parked
				total.Published1m += t.Published1m
				total.Published5m += t.Published5m
				total.Published15m += t.Published15m
			}
			if *asJSON {
				out := statusJSON{Table: d.table, Dialect: d.dialect.Name(), DatabaseTime: now.UTC(),
					Total: newTopicJSON(total), Topics: []topicJSON{}}
				out.Total.Topic = ""
				for _, t := range topics {
					out.Topics = append(out.Topics, newTopicJSON(t))
				}
				return writeJSON(inv, out)
			}
			printStatus(inv.stdout, d, now, topics, total)
			return nil
		}
	},
}

// statusJSON is the output of 'status --json'.
type statusJSON struct {
	Table        string      `json:"table"`
	Dialect      string      `json:"dialect"`
	DatabaseTime time.Time   `json:"database_time"`
	Total        topicJSON   `json:"total"`
	Topics       []topicJSON `json:"topics"`
}

type topicJSON struct {
	Topic            string  `json:"topic,omitempty"`
	Pending          int64   `json:"pending"`
	OldestPendingAge float64 `json:"oldest_pending_age_seconds"`
	Parked           int64   `json:"parked"`
	// Published counts the events published in the last 1, 5 and 15
	// minutes; RatePerSecond divides them by the window.
	Published     map[string]int64   `json:"published"`
	RatePerSecond map[string]float64 `json:"rate_per_second"`
}

func newTopicJSON(t store.TopicStats) topicJSON {
	return topicJSON{
		Topic: t.Topic, Pending: t.Pending, OldestPendingAge: t.OldestPendingAge.Seconds(), Parked: t.Parked,
		Published: map[string]int64{"1m": t.Published1m, "5m": t.Published5m, "15m": t.Published15m},
		RatePerSecond: map[string]float64{
			"1m": float64(t.Published1m) / 60, "5m": float64(t.Published5m) / 300, "15m": float64(t.Published15m) / 900,
		},
	}
}

func printStatus(w io.Writer, d *database, now time.Time, topics []store.TopicStats, total store.TopicStats) {
	fmt.Fprintf(w, "outbox table %s (%s), database time %s\n\n", d.table, d.dialect.Name(), now.UTC().Format(time.DateTime+" MST"))
	if len(topics) == 0 {
		fmt.Fprintln(w, "nothing pending or parked, nothing published in the last 15 minutes")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPENDING\tOLDEST\tPARKED\tPUBLISHED/MIN 1m\t5m\t15m")
	line := func(t store.TopicStats) {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%.1f\t%.1f\t%.1f\n", t.Topic, t.Pending, age(t.OldestPendingAge), t.Parked,
			float64(t.Published1m), float64(t.Published5m)/5, float64(t.Published15m)/15)
	}
	for _, t := range topics {
		if t.Topic == "" {
			t.Topic = "(no topic)"
		}
		line(t)
	}
	if len(topics) > 1 {
		line(total)
	}
	tw.Flush()
	if total.Parked > 0 {
		fmt.Fprintf(w, "\n%d parked: they block the later events of their keys; see 'outbox parked list'\n", total.Parked)
	}
}

// age formats a duration for a terminal: "-" for none, tenths of seconds
// under a minute, whole seconds above.
func age(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox/store"
)

var parkedCommand = &command{
	name:    "parked",
	summary: "list, show, retry or skip parked events (given up by the relay; they block their keys)",
	sub:     []*command{parkedListCommand, parkedShowCommand, parkedRetryCommand, parkedSkipCommand},
}

var parkedListCommand = &command{
	name:    "list",
	summary: "list parked events, oldest first, with their last error",
	setup: func(fs *flag.FlagSet) func(context.Context, *invocation) error {
		db := dbFlags(fs)
		limit := fs.Int("limit", 50, "most events listed")
		asJSON := fs.Bool("json", false, "print JSON, for scripts")
		return func(ctx context.Context, inv *invocation) error {
			if *limit <= 0 {
				return usagef("--limit must be positive")
			}
			d, err := db.openStore(ctx)
			if err != nil {
				return err
			}
			defer d.Close()
			rows, err := d.store.ListParked(ctx, 0, *limit)
			if err != nil {
				return err
			}
			if *asJSON {
				out := []rowJSON{}
				for i := range rows {
					out = append(out, newRowJSON(&rows[i]))
				}
				return writeJSON(inv, out)
			}
			stats, err := d.store.Stats(ctx)
			if err != nil {
				return err
			}
			now, err := d.store.Now(ctx)
			if err != nil {
				return err
			}
			if len(rows) == 0 {
				fmt.Fprintf(inv.stdout, "no parked events in %s\n", d.table)
				return nil
			}
			tw := tabwriter.NewWriter(inv.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tTOPIC\tKEY\tTYPE\tATTEMPTS\tPARKED\tLAST ERROR")
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s ago\t%s\n", r.ID, r.Topic, orDash(r.Key), r.EventType,
					r.Attempts, age(now.Sub(r.ParkedAt)), firstLine(r.LastError, 80))
			}
			tw.Flush()
			fmt.Fprintf(inv.stdout, "\n%d of %d parked events; 'outbox parked show <id>' shows one\n", len(rows), stats.Parked)
			return nil
		}
	},
}

// rowJSON is an event in the JSON of 'parked list' and 'parked show'.
type rowJSON struct {
	ID            uuid.UUID         `json:"id"`
	State         string            `json:"state"`
	Seq           int64             `json:"seq"`
	Topic         string            `json:"topic"`
	Key           string            `json:"key"`
	EventType     string            `json:"event_type"`
	AggregateType string            `json:"aggregate_type"`
	AggregateID   string            `json:"aggregate_id"`
	Attempts      int               `json:"attempts"`
	CreatedAt     time.Time         `json:"created_at"`
	PublishedAt   *time.Time        `json:"published_at,omitempty"`
	ParkedAt      *time.Time        `json:"parked_at,omitempty"`
	LastError     string            `json:"last_error,omitempty"`
	Headers       map[string]string `json:"headers"`
	Payload       json.RawMessage   `json:"payload,omitempty"`
}

func newRowJSON(r *store.Row) rowJSON {
	opt := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		t = t.UTC()
		return &t
	}
	out := rowJSON{
		ID: r.ID, State: r.State(), Seq: r.Seq, Topic: r.Topic, Key: r.Key, EventType: r.EventType,
		AggregateType: r.AggregateType, AggregateID: r.AggregateID, Attempts: r.Attempts,
		CreatedAt: r.CreatedAt.UTC(), PublishedAt: opt(r.PublishedAt), ParkedAt: opt(r.ParkedAt),
		LastError: r.LastError, Headers: r.Headers,
	}
	if json.Valid(r.Payload) {
		out.Payload = r.Payload
	}
	return out
}

var parkedShowCommand = &command{
	name:    "show",
	summary: "show one event, parked or not: its state, last error, headers and payload",
	args:    "<event-id>",
	setup: func(fs *flag.FlagSet) func(context.Context, *invocation) error {
		db := dbFlags(fs)
		asJSON := fs.Bool("json", false, "print JSON, for scripts")
		return func(ctx context.Context, inv *invocation) error {
			id, err := oneID(inv.args)
			if err != nil {
				return err
			}
			d, err := db.openStore(ctx)
			if err != nil {
				return err
			}
			defer d.Close()
			r, err := d.store.GetEvent(ctx, id)
			if err != nil {
				return err
			}
			if *asJSON {
				return writeJSON(inv, newRowJSON(&r))
			}
			printRow(inv.stdout, &r)
			return nil
		}
	},
}

func printRow(w io.Writer, r *store.Row) {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	field := func(name, value string) { fmt.Fprintf(tw, "%s:\t%s\n", name, value) }
	field("id", r.ID.String())
	field("state", r.State())
	field("seq", fmt.Sprint(r.Seq))
	field("topic", r.Topic)
	field("key", orDash(r.Key))
	field("event type", r.EventType)
	field("aggregate", r.AggregateType+" "+r.AggregateID)
	field("created", r.CreatedAt.UTC().Format(time.RFC3339Nano))
	if !r.ParkedAt.IsZero() {
		field("parked", r.ParkedAt.UTC().Format(time.RFC3339Nano))
	}
	if !r.PublishedAt.IsZero() {
		field("published", r.PublishedAt.UTC().Format(time.RFC3339Nano))
	}
	field("attempts", fmt.Sprint(r.Attempts))
	field("last error", orDash(r.LastError))
	tw.Flush()
	if len(r.Headers) == 0 {
		fmt.Fprintln(w, "headers: none")
	} else {
		fmt.Fprintln(w, "headers:")
	}
	for _, k := range slices.Sorted(maps.Keys(r.Headers)) {
		fmt.Fprintf(w, "  %s: %s\n", k, r.Headers[k])
	}
	fmt.Fprintln(w, "payload:")
	var pretty bytes.Buffer
	if json.Indent(&pretty, r.Payload, "  ", "  ") == nil {
		fmt.Fprintf(w, "  %s\n", pretty.String())
	} else {
		fmt.Fprintf(w, "  %s\n", r.Payload)
	}
}

// retryChunk bounds one retry statement (and its transaction) when a key
// or the whole table is retried.
const retryChunk = 1000

var parkedRetryCommand = &command{
	name:    "retry",
	summary: "make parked events pending again (retry count reset) so that the relay publishes them: one, a key's, or all",
	args:    "[<event-id>]",
	setup: func(fs *flag.FlagSet) func(context.Context, *invocation) error {
		db := dbFlags(fs)
		key := fs.String("key", "", "retry the parked events of this key")
		all := fs.Bool("all", false, "retry every parked event (see --limit)")
		limit := fs.Int("limit", 0, "with --key or --all: retry at most this many, oldest first; 0 means no limit")
		reason := fs.String("reason", "", "why, for the audit record")
		who := fs.String("actor", actor(), "who, for the audit record")
		return func(ctx context.Context, inv *invocation) error {
			var id uuid.UUID
			selectors := 0
			if len(inv.args) > 0 {
				var err error
				if id, err = oneID(inv.args); err != nil {
					return err
				}
				selectors++
			}
			if *key != "" {
				selectors++
			}
			if *all {
				selectors++
			}
			switch {
			case selectors != 1:
				return usagef("give exactly one of <event-id>, --key or --all")
			case *limit < 0:
				return usagef("--limit must not be negative")
			}
			d, err := db.openStore(ctx)
			if err != nil {
				return err
			}
			defer d.Close()
			p := store.RetryParams{ID: id, Key: *key, Action: store.Action{Actor: *who, Reason: *reason}}
			if id != uuid.Nil {
				p.Limit = 1
				n, err := d.store.RetryParked(ctx, p)
				if err != nil {
					return err
				}
				if n == 0 {
					return notParked(ctx, d, id)
				}
				fmt.Fprintf(inv.stdout, "retried %s: pending again, the relay publishes it\n", id)
				return nil
			}
			total := 0
			for *limit == 0 || total < *limit {
				p.Limit = retryChunk
				if *limit > 0 {
					p.Limit = min(retryChunk, *limit-total)
				}
				n, err := d.store.RetryParked(ctx, p)
				total += n
				if err != nil {
					return fmt.Errorf("after %d retried: %w", total, err)
				}
				if n < p.Limit {
					break
				}
				fmt.Fprintf(inv.stderr, "retried %d so far\n", total)
			}
			fmt.Fprintf(inv.stdout, "retried %d parked events: pending again, the relay publishes them\n", total)
			return nil
		}
	},
}

var parkedSkipCommand = &command{
	name: "skip",
	summary: "give a parked event up for good: it is never published, its key's later events are released, " +
		"and who, when and why is recorded in last_error and the outbox_audit table",
	args: "<event-id>",
	setup: func(fs *flag.FlagSet) func(context.Context, *invocation) error {
		db := dbFlags(fs)
		reason := fs.String("reason", "", "why (required), for the audit record")
		who := fs.String("actor", actor(), "who, for the audit record")
		return func(ctx context.Context, inv *invocation) error {
			id, err := oneID(inv.args)
			if err != nil {
				return err
			}
			if strings.TrimSpace(*reason) == "" {
				return usagef("--reason is required: say why the event is given up")
			}
			d, err := db.openStore(ctx)
			if err != nil {
				return err
			}
			defer d.Close()
			err = d.store.SkipParked(ctx, id, store.Action{Actor: *who, Reason: *reason})
			if errors.Is(err, store.ErrNotParked) {
				return notParked(ctx, d, id)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(inv.stdout, "skipped %s: it will not be published; the later events of its key are released\n", id)
			return nil
		}
	},
}

// notParked explains why an event could not be retried or skipped.
func notParked(ctx context.Context, d *database, id uuid.UUID) error {
	r, err := d.store.GetEvent(ctx, id)
	if err != nil {
		return err
	}
	return fmt.Errorf("event %s is %s, not parked", id, r.State())
}

func oneID(args []string) (uuid.UUID, error) {
	if len(args) != 1 {
		return uuid.Nil, usagef("want one event ID, got %d arguments", len(args))
	}
	id, err := uuid.Parse(args[0])
	if err != nil {
		return uuid.Nil, usagef("event ID %q: %v", args[0], err)
	}
	return id, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// firstLine returns the first line of s, cut to n runes.
func firstLine(s string, n int) string {
	s, _, _ = strings.Cut(s, "\n")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

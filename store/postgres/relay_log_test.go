package postgres_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/internal/faulttest"
	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/relay/relaytest"
	"github.com/outboxkit/outbox/store/postgres"
)

// records is a slog handler that keeps every record, with the attributes of
// its logger.
type records struct {
	mu    sync.Mutex
	list  []slog.Record
	attrs []slog.Attr
	all   *records // the root, which holds the list
}

func newRecords() *records {
	r := &records{}
	r.all = r
	return r
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }

func (r *records) Handle(_ context.Context, rec slog.Record) error {
	rec = rec.Clone()
	rec.AddAttrs(r.attrs...)
	r.all.mu.Lock()
	defer r.all.mu.Unlock()
	r.all.list = append(r.all.list, rec)
	return nil
}

func (r *records) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &records{attrs: append(append([]slog.Attr{}, r.attrs...), attrs...), all: r.all}
}

func (r *records) WithGroup(string) slog.Handler { return r }

// find returns the records with message msg, each as its level and
// attributes.
func (r *records) find(msg string) []logged {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []logged
	for _, rec := range r.list {
		if rec.Message != msg {
			continue
		}
		l := logged{level: rec.Level, attrs: map[string]slog.Value{}}
		rec.Attrs(func(a slog.Attr) bool {
			l.attrs[a.Key] = a.Value
			return true
		})
		out = append(out, l)
	}
	return out
}

type logged struct {
	level slog.Level
	attrs map[string]slog.Value
}

// The relay logs a debug line per published batch (topic, count, duration),
// a warning with the reason when a broker outage begins, and an info line
// when it ends, with the number of events released during it.
func TestLogs(t *testing.T) {
	t.Parallel()
	st := testenv.PostgresStore(t, postgres.Config{})
	log := newRecords()
	check := faulttest.NewChecker()
	rec := faulttest.NewRecorder()
	pub := faulttest.NewFlaky(rec, 0, 1)
	pub.SetDown(fmt.Errorf("dial tcp 127.0.0.1:9: connect: connection refused: %w", outbox.ErrUnreachable))
	cfg := relaytest.FastConfig()
	cfg.Logger = slog.New(log)
	relaytest.Start(t, st, pub, cfg)

	const n = 10
	events := make([]outbox.Event, n)
	for i := range events {
		events[i] = relaytest.Event(fmt.Sprint("k", i%3), i)
	}
	tx, err := st.Pool().Begin(t.Context())
	require.NoError(t, err)
	require.NoError(t, st.AddTx(t.Context(), tx, events...))
	require.NoError(t, tx.Commit(t.Context()))
	check.Committed(events...)

	const began, ended = "relay: broker outage began; events are released without counting an attempt", "relay: broker outage ended"
	relaytest.Eventually(t, 10*time.Second, "the outage's first line", func() bool { return len(log.find(began)) > 0 })
	pub.SetDown(nil)
	relaytest.Eventually(t, 10*time.Second, "all published after the outage", func() bool { return check.Missing(rec.Received()) == 0 })
	relaytest.Eventually(t, 10*time.Second, "the outage's last line", func() bool { return len(log.find(ended)) > 0 })

	b := log.find(began)
	require.Len(t, b, 1, "one line when the outage begins")
	require.Equal(t, slog.LevelWarn, b[0].level)
	require.Equal(t, "orders", b[0].attrs["topic"].String())
	require.Contains(t, b[0].attrs["err"].String(), "connection refused")

	e := log.find(ended)
	require.Len(t, e, 1)
	require.Equal(t, slog.LevelInfo, e[0].level)
	// The events were committed together, so the batch that met the outage
	// held them all.
	require.GreaterOrEqual(t, e[0].attrs["released"].Int64(), int64(n))
	require.Equal(t, slog.KindDuration, e[0].attrs["duration"].Kind())

	var published int64
	for _, l := range log.find("relay: published") {
		require.Equal(t, slog.LevelDebug, l.level)
		require.Equal(t, "orders", l.attrs["topic"].String())
		require.Equal(t, slog.KindDuration, l.attrs["duration"].Kind())
		published += l.attrs["count"].Int64()
	}
	require.Equal(t, int64(n), published, "a line per published batch, counting every event")
}

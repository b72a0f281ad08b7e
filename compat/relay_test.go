package compat_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker/kafka"
	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/migrations"
	"github.com/outboxkit/outbox/relay/relaytest"
	"github.com/outboxkit/outbox/store"
	"github.com/outboxkit/outbox/store/postgres"
)

// row is an outbox row and what the relay must publish for it: compat.py
// write answers with these, event_data being the JSON text the driver sent.
type row struct {
	ID        string `json:"id"`
	Key       string `json:"key"`
	Topic     string `json:"topic"`
	EventData string `json:"event_data"`
}

// sqlalchemyURL is the test PostgreSQL as an SQLAlchemy URL with psycopg 3.
func sqlalchemyURL() string {
	_, rest, _ := strings.Cut(testenv.PostgresURL(), "://")
	return "postgresql+psycopg://" + rest
}

// pythonWrite adds one event per key in one transaction with the services'
// writer: envelope.model_dump(mode="json") with the topic inside, key =
// aggregate ID. Their timestamps cycle through naive, UTC and offset
// datetimes.
func pythonWrite(t *testing.T, table, topic string, keys ...string) []row {
	t.Helper()
	stamps := []string{"2026-11-26T10:00:00.123456", "2026-11-26T10:00:00+00:00", "2026-11-26T12:00:00.5+02:00"}
	var events []map[string]any
	for i, key := range keys {
		events = append(events, map[string]any{
			"topic": topic, "aggregate_type": "batch", "aggregate_id": key,
			"envelope": map[string]any{
				"event_type":      "huleedu.els.batch.essays.ready.v1",
				"source_service":  "essay_lifecycle_service",
				"event_timestamp": stamps[i%len(stamps)],
				"data":            map[string]any{"batch_id": key, "essay_ids": []string{fmt.Sprintf("e-%d", i)}},
			},
		})
	}
	var rows []row
	runPython(t, events, &rows, "write", sqlalchemyURL(), table)
	require.Len(t, rows, len(keys))
	return rows
}

// relayAll runs a relay over st to the real Kafka until n records arrived
// on topic, and returns them in the order they were fetched.
func relayAll(t *testing.T, st store.Store, brokers []string, topic string, n int) []*kgo.Record {
	t.Helper()
	pub, err := kafka.New(kafka.Config{Brokers: brokers})
	require.NoError(t, err)
	t.Cleanup(func() { pub.Close() }) // after the relay stopped: cleanups run last first
	relaytest.Start(t, st, pub, relaytest.FastConfig())

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	require.NoError(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < n {
		fs := cl.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "read %d of %d records", len(recs), n)
		recs = append(recs, fs.Records()...)
	}
	return recs
}

// requirePublished checks that recs are rows, each once, with the row's
// topic, key and event_data bytes, every key's rows in write order, and
// values that both sides' envelope models read.
func requirePublished(t *testing.T, rows []row, recs []*kgo.Record) {
	t.Helper()
	require.Len(t, recs, len(rows))
	byID := map[string]row{}
	wantOrder := map[string][]string{}
	for _, r := range rows {
		byID[r.ID] = r
		wantOrder[r.Key] = append(wantOrder[r.Key], r.ID)
	}
	gotOrder := map[string][]string{}
	var values []string
	for _, rec := range recs {
		h := map[string]string{}
		for _, kv := range rec.Headers {
			h[kv.Key] = string(kv.Value)
		}
		id := h[outbox.HeaderMessageUUID]
		r, ok := byID[id]
		require.True(t, ok, "record %s is no row's", id)
		delete(byID, id)
		require.Equal(t, r.Topic, rec.Topic)
		require.Equal(t, r.Key, string(rec.Key))
		require.Equal(t, r.EventData, string(rec.Value), "the value is event_data byte for byte")
		gotOrder[r.Key] = append(gotOrder[r.Key], id)

		env := decode(t, rec.Value)
		require.Equal(t, env.CorrelationID, h[outbox.HeaderCorrelationID])
		values = append(values, string(rec.Value))
	}
	require.Equal(t, wantOrder, gotOrder, "every key's events in write order")
	for i, res := range validate(t, values...) {
		require.Empty(t, res.Error, "pydantic refused the published %s", values[i])
	}
}

// Rows the services' SQLAlchemy writer adds to a table the Go migrations
// created are published to Kafka with their topic (from event_data), key
// and bytes.
func TestRelayPublishesPythonRows(t *testing.T) {
	t.Parallel()
	st := testenv.PostgresStore(t, postgres.Config{})
	brokers := testenv.Kafka(t)
	topic := testenv.KafkaTopic(t, brokers, 3)
	rows := pythonWrite(t, st.Table(), topic, "b-1", "b-2", "b-1", "b-3", "b-2", "b-1")
	requirePublished(t, rows, relayAll(t, st, brokers, topic, len(rows)))
}

// The table the services' SQLAlchemy model created, with rows in it, is
// adopted by migrations.Up; afterwards the services' writer, unaware of the
// relay's columns, and the Go writer both add to it, and the relay publishes
// every row.
func TestMigrationsAdoptPythonTable(t *testing.T) {
	t.Parallel()
	pool := testenv.Postgres(t)
	db := stdlib.OpenDBFromPool(pool)
	t.Cleanup(func() { db.Close() })
	brokers := testenv.Kafka(t)
	topic := testenv.KafkaTopic(t, brokers, 3)
	table := testenv.Table("py_outbox")
	t.Cleanup(func() {
		_, _ = db.Exec("DROP TABLE IF EXISTS " + table + ", " + migrations.ClaimsTable(table))
		_, _ = db.Exec("DELETE FROM outbox_migrations WHERE table_name = $1", table)
	})
	ctx := context.Background()

	runPython(t, nil, nil, "create-table", sqlalchemyURL(), table)
	require.ElementsMatch(t, []string{table + "_pkey", "ix_" + table + "_unpublished", "ix_" + table + "_aggregate", "ix_" + table + "_event_type"},
		indexes(t, db, table), "the services' table and indexes")
	rows := pythonWrite(t, table, topic, "b-1", "b-2", "b-1")

	require.NoError(t, migrations.Up(ctx, db, migrations.PostgreSQL, table))
	status, err := migrations.List(ctx, db, migrations.PostgreSQL, table)
	require.NoError(t, err)
	for _, s := range status {
		require.True(t, s.Applied, "migration %d_%s", s.Version, s.Name)
	}
	require.Subset(t, indexes(t, db, table), []string{"ix_" + table + "_unpublished", "ix_" + table + "_aggregate", "ix_" + table + "_event_type"})
	var def string
	require.NoError(t, db.QueryRow("SELECT indexdef FROM pg_indexes WHERE indexname = $1", "ix_"+table+"_unpublished").Scan(&def))
	require.Contains(t, def, "(seq)", "the claim's index replaces the services' one")

	rows = append(rows, pythonWrite(t, table, topic, "b-2", "b-1")...)
	st, err := postgres.New(pool, postgres.Config{Table: table})
	require.NoError(t, err)
	e, err := outbox.Envelope[batchSpellcheck]{
		EventType: "huleedu.els.batch.essays.ready.v1", SourceService: "go_service", Data: batchSpellcheck{"b-1", []string{"e-go"}},
	}.Event(topic, "batch", "b-1")
	require.NoError(t, err)
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, st.AddTx(ctx, tx, e))
	require.NoError(t, tx.Commit(ctx))
	rows = append(rows, row{ID: e.ID.String(), Key: e.Key, Topic: topic, EventData: string(e.Payload)})

	requirePublished(t, rows, relayAll(t, st, brokers, topic, len(rows)))
}

func indexes(t *testing.T, db *sql.DB, table string) []string {
	t.Helper()
	rs, err := db.Query("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = $1", table)
	require.NoError(t, err)
	defer rs.Close()
	var names []string
	for rs.Next() {
		var n string
		require.NoError(t, rs.Scan(&n))
		names = append(names, n)
	}
	require.NoError(t, rs.Err())
	return names
}

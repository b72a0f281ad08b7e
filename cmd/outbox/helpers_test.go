package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/migrations"
	"github.com/outboxkit/outbox/store"
	"github.com/outboxkit/outbox/store/mysql"
	"github.com/outboxkit/outbox/store/postgres"
	"github.com/outboxkit/outbox/store/sqlite"
)

// childEnv makes the test binary run main instead of the tests: the relay
// test starts it as the outbox command.
const childEnv = "OUTBOX_CLI_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main()
	}
	os.Exit(m.Run())
}

// result is what a command run in process returned.
type result struct {
	code           int
	stdout, stderr string
}

func cli(t *testing.T, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), args, &stdout, &stderr)
	return result{code, stdout.String(), stderr.String()}
}

// requireOK fails the test unless r exited 0.
func requireOK(t *testing.T, r result) result {
	t.Helper()
	require.Equal(t, 0, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
	return r
}

// fixture is a fresh, migrated outbox table of one dialect.
type fixture struct {
	dialect string
	dsn     string
	table   string
	st      adminStore
	db      *sql.DB
	add     func(t *testing.T, events ...outbox.Event)
}

// dialects runs fn as a parallel subtest per dialect.
func dialects(t *testing.T, fn func(t *testing.T, f *fixture)) {
	forDialects(t, []string{"postgres", "mysql", "sqlite"}, fn)
}

// serverDialects runs fn as a parallel subtest per database with a server.
func serverDialects(t *testing.T, fn func(t *testing.T, f *fixture)) {
	forDialects(t, []string{"postgres", "mysql"}, fn)
}

func forDialects(t *testing.T, names []string, fn func(t *testing.T, f *fixture)) {
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, newFixture(t, name))
		})
	}
}

func newFixture(t *testing.T, dialect string) *fixture {
	t.Helper()
	f := &fixture{dialect: dialect}
	switch dialect {
	case "sqlite":
		st := testenv.SQLiteStore(t, sqlite.Config{})
		f.db, f.table, f.st = st.DB(), st.Table(), st
		f.dsn = "sqlite:" + testenv.SQLiteFile(t, f.db)
		f.add = func(t *testing.T, events ...outbox.Event) {
			tx, err := f.db.BeginTx(t.Context(), nil)
			require.NoError(t, err)
			defer tx.Rollback()
			require.NoError(t, st.AddTx(t.Context(), tx, events...))
			require.NoError(t, tx.Commit())
		}
	case "postgres":
		st := testenv.PostgresStore(t, postgres.Config{})
		f.table, f.st = st.Table(), st
		f.db, f.dsn = testDB(t, dialect)
		f.add = func(t *testing.T, events ...outbox.Event) {
			tx, err := st.Pool().Begin(t.Context())
			require.NoError(t, err)
			defer tx.Rollback(context.Background())
			require.NoError(t, st.AddTx(t.Context(), tx, events...))
			require.NoError(t, tx.Commit(t.Context()))
		}
	default:
		db := testenv.MySQL(t)
		f.dsn, f.table, f.db = testenv.MySQLDSN(), testenv.Table("outbox"), db
		require.NoError(t, migrations.Up(t.Context(), db, migrations.MySQL, f.table))
		t.Cleanup(func() {
			_, _ = db.ExecContext(context.Background(), "DROP TABLE IF EXISTS "+f.table+", "+migrations.ClaimsTable(f.table))
			_, _ = db.ExecContext(context.Background(), "DELETE FROM outbox_migrations WHERE table_name = ?", f.table)
		})
		st, err := mysql.New(db, mysql.Config{Table: f.table})
		require.NoError(t, err)
		f.st = st
		f.add = func(t *testing.T, events ...outbox.Event) {
			tx, err := db.BeginTx(t.Context(), nil)
			require.NoError(t, err)
			defer tx.Rollback()
			require.NoError(t, st.AddTx(t.Context(), tx, events...))
			require.NoError(t, tx.Commit())
		}
	}
	t.Cleanup(func() {
		_, _ = f.db.ExecContext(context.Background(), f.sql("DELETE FROM outbox_audit WHERE table_name = $1"), f.table)
	})
	return f
}

// testDB returns a handle on the test database of dialect and its DSN, or
// skips the test (fails it under CI) when the database does not answer.
func testDB(t *testing.T, dialect string) (*sql.DB, string) {
	t.Helper()
	if dialect == "mysql" {
		return testenv.MySQL(t), testenv.MySQLDSN()
	}
	db := stdlib.OpenDBFromPool(testenv.Postgres(t))
	t.Cleanup(func() { db.Close() })
	return db, testenv.PostgresURL()
}

// sql turns PostgreSQL placeholders into MySQL's and fills in {t}.
func (f *fixture) sql(q string) string {
	q = strings.ReplaceAll(q, "{t}", f.table)
	if f.dialect == "mysql" {
		for i := 9; i >= 1; i-- {
			q = strings.ReplaceAll(q, fmt.Sprintf("$%d", i), "?")
		}
	}
	return q
}

func (f *fixture) exec(t *testing.T, q string, args ...any) {
	t.Helper()
	_, err := f.db.ExecContext(t.Context(), f.sql(q), args...)
	require.NoError(t, err, q)
}

func (f *fixture) scalar(t *testing.T, q string, args ...any) int64 {
	t.Helper()
	var n int64
	require.NoError(t, f.db.QueryRowContext(t.Context(), f.sql(q), args...).Scan(&n), q)
	return n
}

// cli runs the command against the fixture's table.
func (f *fixture) cli(t *testing.T, args ...string) result {
	t.Helper()
	return cli(t, append(args, "--dsn", f.dsn, "--table", f.table)...)
}

// ago is the SQL of "now minus hours" in the fixture's dialect.
func (f *fixture) ago(hours int) string {
	switch f.dialect {
	case "mysql":
		return fmt.Sprintf("NOW(6) - INTERVAL %d HOUR", hours)
	case "sqlite":
		return fmt.Sprintf("CAST(unixepoch('subsec') * 1000000 AS INTEGER) - %d", int64(hours)*3600_000_000)
	}
	return fmt.Sprintf("now() - interval '%d hours'", hours)
}

// claim claims every pending event of the table.
func (f *fixture) claim(t *testing.T) store.Claim {
	t.Helper()
	c, err := f.st.Claim(t.Context(), store.ClaimParams{Owner: "test", Limit: 1000, Lease: time.Minute})
	require.NoError(t, err)
	return c
}

// publishAll marks every pending event published, as a relay would.
func (f *fixture) publishAll(t *testing.T) {
	t.Helper()
	c := f.claim(t)
	n, err := f.st.MarkPublished(t.Context(), c.Token, ids(c.Records))
	require.NoError(t, err)
	require.Equal(t, len(c.Records), n)
}

// park writes e and parks it with err, as the relay does after its attempts.
func (f *fixture) park(t *testing.T, e outbox.Event, err string) {
	t.Helper()
	f.add(t, e)
	c := f.claim(t)
	require.Len(t, c.Records, 1)
	require.Equal(t, e.ID, c.Records[0].ID)
	require.NoError(t, f.st.Fail(t.Context(), c.Token, []store.Failure{{ID: e.ID, Err: err, Park: true}}))
}

func ids(recs []store.Record) []uuid.UUID {
	out := make([]uuid.UUID, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

// event returns an event of topic and key with an envelope payload; with
// no key it is unordered.
func event(topic, key, eventType string) outbox.Event {
	id := outbox.NewID()
	return outbox.Event{
		ID: id, Topic: topic, Key: key, Unordered: key == "", AggregateType: "order", AggregateID: "agg-" + key,
		EventType: eventType,
		Payload:   fmt.Appendf(nil, `{"event_id":%q,"event_type":%q,"data":{"key":%q}}`, id, eventType, key),
	}
}

// kafkaBroker is the real broker the test publishes to, shared by the
// tests: each names its topics with topic.
type kafkaBroker struct{ brokers []string }

func newBroker(t *testing.T) kafkaBroker {
	t.Helper()
	return kafkaBroker{testenv.Kafka(t)}
}

// Addr returns the value of a --brokers flag.
func (b kafkaBroker) Addr() string { return strings.Join(b.brokers, ",") }

// topic returns a topic name of the test's own that starts with name.
func (kafkaBroker) topic(name string) string { return testenv.Table(name) }

// consumed reads topic from its start until it has n records or the timeout
// passes.
func consumed(t *testing.T, addr, topic string, n int, timeout time.Duration) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(addr, ",")...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.AllowAutoTopicCreation())
	require.NoError(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

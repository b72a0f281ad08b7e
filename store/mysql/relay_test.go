package mysql_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker"
	"github.com/outboxkit/outbox/internal/faulttest"
	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/relay"
	"github.com/outboxkit/outbox/store/mysql"
)

// The relay's fault tests (relay/relay_test.go) repeated on MariaDB, checked
// by the same faulttest.Checker.

// fastConfig keeps the relay's timings short for tests.
func fastConfig() relay.Config {
	return relay.Config{
		BatchSize:          100,
		PollInterval:       10 * time.Millisecond,
		ErrorRetryInterval: 5 * time.Millisecond,
		MaxBackoff:         50 * time.Millisecond,
		MaxRetries:         1000,
		ShutdownTimeout:    2 * time.Second,
	}
}

// startRelay runs a relay until the test ends.
func startRelay(t *testing.T, st *mysql.Store, pub broker.Publisher, cfg relay.Config) *relay.Relay {
	t.Helper()
	r, err := relay.New(st, pub, cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.Run(ctx); err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

// commit writes events in one committed transaction and records them.
func commit(t *testing.T, st *mysql.Store, c *faulttest.Checker, events ...outbox.Event) {
	t.Helper()
	add(t, st, events...)
	if c != nil {
		c.Committed(events...)
	}
}

func keyed(key string, i int) outbox.Event {
	e := event(key)
	e.ID = outbox.NewID()
	e.Payload = fmt.Appendf(nil, `{"event_id":%q,"data":{"key":%q,"n":%d}}`, e.ID, key, i)
	return e
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// scalar runs query with the table name in place of %s.
func scalar[T any](t *testing.T, st *mysql.Store, query string, args ...any) T {
	t.Helper()
	var v T
	require.NoError(t, st.DB().QueryRow(fmt.Sprintf(query, st.Table()), args...).Scan(&v))
	return v
}

// P1 through the relay: nothing from a rolled-back transaction, savepoint or
// failed statement is published. A failed statement leaves a MySQL
// transaction usable: what it wrote before commits, the statement's own
// events do not.
func TestRelayRollbackNeverPublished(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	ctx := testCtx(t)
	check := faulttest.NewChecker()
	rec := faulttest.NewRecorder(0, 1)
	startRelay(t, st, broker.NewWatermill(rec), fastConfig())

	commit(t, st, check, keyed("a", 0))

	rolledBack := keyed("b", 0)
	tx, err := st.DB().BeginTx(ctx, nil)
	require.NoError(t, err)
	require.NoError(t, st.AddTx(ctx, tx, rolledBack))
	require.NoError(t, tx.Rollback())
	check.RolledBack(rolledBack)

	kept, savepointed := keyed("c", 0), keyed("c", 1)
	tx, err = st.DB().BeginTx(ctx, nil)
	require.NoError(t, err)
	require.NoError(t, st.AddTx(ctx, tx, kept))
	_, err = tx.ExecContext(ctx, "SAVEPOINT sp")
	require.NoError(t, err)
	require.NoError(t, st.AddTx(ctx, tx, savepointed))
	_, err = tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT sp")
	require.NoError(t, err)
	require.NoError(t, tx.Commit())
	check.Committed(kept)
	check.RolledBack(savepointed)

	before, failed := keyed("d", 0), keyed("d", 1)
	dup := keyed("d2", 0)
	dup.ID = before.ID
	tx, err = st.DB().BeginTx(ctx, nil)
	require.NoError(t, err)
	require.NoError(t, st.AddTx(ctx, tx, before))
	require.Error(t, st.AddTx(ctx, tx, failed, dup))
	require.NoError(t, tx.Commit())
	check.Committed(before)
	check.RolledBack(failed)

	commit(t, st, check, keyed("s", 0))
	eventually(t, 10*time.Second, "sentinel", func() bool { return check.Missing(rec.Received()) == 0 })
	report := check.Check(rec.Received(), 0)
	require.True(t, report.OK(), report.String())
	require.Equal(t, 4, report.Received)
}

// P4: three relays, 10,000 events over 200 keys written while they run, 10%
// of publishes failing at random: nothing lost, zero per-key inversions.
func TestRelayThreeRelaysPerKeyOrder(t *testing.T) {
	t.Parallel()
	const keys, perKey = 200, 50
	st := newStore(t)
	check := faulttest.NewChecker()
	rec := faulttest.NewRecorder(0.10, 42)
	pub := broker.NewWatermill(rec)
	var relays []*relay.Relay
	for i := range 3 {
		cfg := fastConfig()
		cfg.Owner = fmt.Sprint("relay-", i)
		relays = append(relays, startRelay(t, st, pub, cfg))
	}
	for i := range perKey {
		batch := make([]outbox.Event, 0, keys)
		for k := range keys {
			batch = append(batch, keyed(fmt.Sprint("key-", k), i))
		}
		commit(t, st, check, batch...)
	}
	eventually(t, 60*time.Second, "all events", func() bool { return check.Missing(rec.Received()) == 0 })
	var counted, failed int64
	for _, r := range relays {
		counted += r.Stats().PossibleDuplicates
		failed += r.Stats().Failed
	}
	report := check.Check(rec.Received(), counted)
	t.Log(report)
	require.True(t, report.OK(), report.String())
	require.Equal(t, keys*perKey, report.Committed)
	require.Greater(t, failed, int64(0), "failures were injected")
	require.Zero(t, scalar[int64](t, st, "SELECT COUNT(*) FROM %s WHERE parked_at IS NOT NULL"))
}

// P5: a poison event is parked with its last_error and does not block other
// keys; the later events of its own key wait behind it.
func TestRelayPoisonParked(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	check := faulttest.NewChecker()
	rec := faulttest.NewRecorder(0, 1)
	cfg := fastConfig()
	cfg.MaxRetries = 3
	r := startRelay(t, st, broker.NewWatermill(rec), cfg)

	poison, behind := keyed("poisoned", 0), keyed("poisoned", 1)
	rec.FailID(poison.ID, errors.New("schema registry says no"))
	commit(t, st, nil, poison, behind)
	var others []outbox.Event
	for k := range 20 {
		others = append(others, keyed(fmt.Sprint("healthy-", k), 0))
	}
	commit(t, st, check, others...)

	eventually(t, 10*time.Second, "poison parked", func() bool {
		return scalar[int64](t, st, "SELECT COUNT(*) FROM %s WHERE parked_at IS NOT NULL") == 1
	})
	require.Zero(t, check.Missing(rec.Received()), "other keys flow")
	require.Contains(t, scalar[string](t, st, "SELECT last_error FROM %s WHERE id = ?", poison.ID.String()), "schema registry says no")
	require.Equal(t, 3, scalar[int](t, st, "SELECT retry_count FROM %s WHERE id = ?", poison.ID.String()))
	time.Sleep(100 * time.Millisecond)
	for _, m := range rec.Received() {
		require.NotEqual(t, behind.ID, m.ID, "an event behind a parked one must wait")
	}
	require.Equal(t, int64(1), r.Stats().Parked)
}

// P2: the relay's connections are killed on the server again and again
// (KILL CONNECTION, and KILL QUERY in between, which also interrupts a claim
// waiting in GET_LOCK); the relay recovers and loses nothing. The relay runs
// as a MariaDB user of its own, so that the test kills its connections only.
func TestRelayKilledConnections(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	ctx := testCtx(t)
	relayDB := relayUser(t, st.DB())
	relayStore, err := mysql.New(relayDB, mysql.Config{Table: st.Table()})
	require.NoError(t, err)

	check := faulttest.NewChecker()
	rec := faulttest.NewRecorder(0, 1)
	cfg := fastConfig()
	cfg.Lease = 3 * time.Second // bounds the wait for a claim whose commit was lost
	r, err := relay.New(relayStore, broker.NewWatermill(rec), cfg)
	require.NoError(t, err)
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(runCtx) }()
	defer func() { cancel(); <-done }()

	user := relayUserName(t, relayDB)
	killed := 0
	for round := range 20 {
		var batch []outbox.Event
		for k := range 50 {
			batch = append(batch, keyed(fmt.Sprint("k", k), round))
		}
		commit(t, st, check, batch...)
		kill := "KILL CONNECTION "
		if round%3 == 1 {
			kill = "KILL QUERY "
		}
		rows, err := st.DB().QueryContext(ctx, "SELECT id FROM information_schema.processlist WHERE user = ?", user)
		require.NoError(t, err)
		var ids []int64
		for rows.Next() {
			var id int64
			require.NoError(t, rows.Scan(&id))
			ids = append(ids, id)
		}
		require.NoError(t, rows.Err())
		for _, id := range ids {
			// The connection may have ended meanwhile (unknown thread 1094).
			if _, err := st.DB().ExecContext(ctx, fmt.Sprint(kill, id)); err == nil {
				killed++
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.Greater(t, killed, 0)
	eventually(t, 30*time.Second, "all published", func() bool { return check.Missing(rec.Received()) == 0 })
	report := check.Check(rec.Received(), r.Stats().PossibleDuplicates)
	t.Log(report, "; connections killed:", killed)
	require.True(t, report.OK(), report.String())
}

// relayUser creates a MariaDB user for this test, dropped at its end, and
// returns a pool that connects as that user.
func relayUser(t *testing.T, admin *sql.DB) *sql.DB {
	t.Helper()
	ctx := testCtx(t)
	cfg, err := gomysql.ParseDSN(testenv.MySQLDSN())
	require.NoError(t, err)
	user := testenv.Table("relay")
	_, err = admin.ExecContext(ctx, fmt.Sprintf("CREATE USER '%s'@'%%'", user))
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = admin.ExecContext(context.Background(), fmt.Sprintf("DROP USER IF EXISTS '%s'@'%%'", user))
	})
	_, err = admin.ExecContext(ctx, fmt.Sprintf("GRANT ALL PRIVILEGES ON `%s`.* TO '%s'@'%%'", cfg.DBName, user))
	require.NoError(t, err)
	cfg.User, cfg.Passwd = user, ""
	db, err := sql.Open("mysql", cfg.FormatDSN())
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	require.NoError(t, db.PingContext(ctx))
	return db
}

func relayUserName(t *testing.T, db *sql.DB) string {
	t.Helper()
	var user string
	require.NoError(t, db.QueryRow("SELECT SUBSTRING_INDEX(USER(), '@', 1)").Scan(&user))
	return user
}

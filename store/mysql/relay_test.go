package mysql_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/internal/faulttest"
	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/relay/relaytest"
	"github.com/outboxkit/outbox/store/mysql"
)

// The relay's promises on MariaDB: the suite the relay package runs on
// PostgreSQL.
func TestRelayConformance(t *testing.T) {
	relaytest.Run(t, testenv.MySQLHarness) // not parallel: see relaytest.Run
}

// Nothing lost: the relay's connections are killed on the server again and again
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
	rec := faulttest.NewRecorder()
	cfg := relaytest.FastConfig()
	cfg.Lease = 3 * time.Second // bounds the wait for a claim whose commit was lost
	r, _ := relaytest.Start(t, relayStore, rec, cfg)

	user := relayUserName(t, relayDB)
	killed := 0
	for round := range 20 {
		var batch []outbox.Event
		for k := range 50 {
			batch = append(batch, relaytest.Event(fmt.Sprint("k", k), round))
		}
		tx, err := st.DB().BeginTx(ctx, nil)
		require.NoError(t, err)
		require.NoError(t, st.AddTx(ctx, tx, batch...))
		require.NoError(t, tx.Commit())
		check.Committed(batch...)
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
	relaytest.Eventually(t, 30*time.Second, "all published", func() bool { return check.Missing(rec.Received()) == 0 })
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

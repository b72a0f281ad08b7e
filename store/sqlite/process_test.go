package sqlite_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox/internal/faulttest"
	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/relay"
	"github.com/outboxkit/outbox/relay/relaytest"
	"github.com/outboxkit/outbox/store/sqlite"
)

// The test binary runs as a relay on the database file named by this
// variable (and the table named by sqliteChildTable) when it is set.
const (
	sqliteChildFile  = "OUTBOX_SQLITE_CHILD_FILE"
	sqliteChildTable = "OUTBOX_SQLITE_CHILD_TABLE"
)

func TestMain(m *testing.M) {
	if path := os.Getenv(sqliteChildFile); path != "" {
		if err := childRelay(path, os.Getenv(sqliteChildTable)); err != nil {
			fmt.Fprintln(os.Stderr, "child relay:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// childRelay relays the table until SIGTERM, to a publisher that accepts
// everything: what the test checks is the database.
func childRelay(path, table string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	db, err := sqlite.Open(path)
	if err != nil {
		return err
	}
	defer db.Close()
	st, err := sqlite.New(db, sqlite.Config{Table: table})
	if err != nil {
		return err
	}
	r, err := relay.New(st, faulttest.NewRecorder(), relaytest.FastConfig())
	if err != nil {
		return err
	}
	return r.Run(ctx)
}

// Eight writers in this process and a relay in another process share one
// database file: no writer meets "database is locked", and the other
// process publishes every committed event. (Without BEGIN IMMEDIATE, a
// writer that read before the relay's last commit fails at its first write,
// whatever the busy timeout.)
func TestRelayInAnotherProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	st := testenv.SQLiteStore(t, sqlite.Config{})
	path := testenv.SQLiteFile(t, st.DB())
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), sqliteChildFile+"="+path, sqliteChildTable+"="+st.Table())
	child.Stderr = os.Stderr
	require.NoError(t, child.Start())
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = child.Process.Kill()
			_ = child.Wait()
		}
	})

	const writers, perWriter = 8, 250
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []error
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				e := relaytest.Event(fmt.Sprintf("w%d-k%d", w, i%5), i)
				err := func() error {
					began := time.Now()
					tx, err := st.DB().BeginTx(context.Background(), nil)
					if err != nil {
						return fmt.Errorf("begin after %v: %w", time.Since(began), err)
					}
					defer tx.Rollback()
					// Business code reads before it writes, which is what
					// needs BEGIN IMMEDIATE.
					var n int
					if err := tx.QueryRow(`SELECT count(*) FROM `+st.Table()+` WHERE event_key = ?`, e.Key).Scan(&n); err != nil {
						return fmt.Errorf("read: %w", err)
					}
					if err := st.AddTx(context.Background(), tx, e); err != nil {
						return err
					}
					if err := tx.Commit(); err != nil {
						return fmt.Errorf("commit: %w", err)
					}
					return nil
				}()
				if err != nil {
					mu.Lock()
					failures = append(failures, err)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	require.Empty(t, len(failures), "writer transactions failed, the first: %v", failures[:min(len(failures), 3)])
	relaytest.Eventually(t, time.Minute, "every event published by the other process", func() bool {
		var pending int
		require.NoError(t, st.DB().QueryRow(`SELECT count(*) FROM `+st.Table()+` WHERE published_at IS NULL`).Scan(&pending))
		return pending == 0
	})
	var published int
	require.NoError(t, st.DB().QueryRow(`SELECT count(*) FROM `+st.Table()+` WHERE published_at IS NOT NULL`).Scan(&published))
	require.Equal(t, writers*perWriter, published)
	require.NoError(t, child.Process.Signal(syscall.SIGTERM))
	require.NoError(t, child.Wait())
	stopped = true
}

package testenv

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/outboxkit/outbox/migrations"
	"github.com/outboxkit/outbox/store/sqlite"
	"github.com/outboxkit/outbox/store/storetest"
)

// SQLite returns a database in a file of the test's own (sqlite.Open),
// closed at the end of the test. SQLite needs no server, so it never skips.
func SQLite(t testing.TB) *sql.DB {
	t.Helper()
	db, err := sqlite.Open(filepath.Join(t.TempDir(), "outbox.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// SQLiteFile returns the file of a SQLite database, for another process to
// open.
func SQLiteFile(t testing.TB, db *sql.DB) string {
	t.Helper()
	var seq int
	var name, file string
	if err := db.QueryRow("PRAGMA database_list").Scan(&seq, &name, &file); err != nil {
		t.Fatal(err)
	}
	return file
}

// SQLiteStore returns a SQLite store over a fresh, migrated table of its
// own. cfg.Table is ignored.
func SQLiteStore(t testing.TB, cfg sqlite.Config) *sqlite.Store {
	t.Helper()
	db := SQLite(t)
	cfg.Table = Table("outbox")
	if err := migrations.Up(context.Background(), db, migrations.SQLite, cfg.Table); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	st, err := sqlite.New(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// SQLiteHarness returns a conformance harness over a fresh SQLite table:
// one writer at a time, no row locks.
func SQLiteHarness(t *testing.T) storetest.Harness {
	st := SQLiteStore(t, sqlite.Config{})
	db, table := st.DB(), st.Table()
	h := sqlHarness(st, db, table, st.AddTx,
		`UPDATE `+table+` SET published_at = published_at - ? WHERE published_at IS NOT NULL`,
		`instr(event_ids, ?) > 0`)
	h.OneWriter = true
	return h
}

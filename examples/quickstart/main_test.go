package main

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/outboxkit/outbox/internal/testenv"
)

// The quickstart runs end to end and its summary says that every committed
// order was published and no rolled-back one was.
func TestRun(t *testing.T) {
	pool := testenv.Postgres(t) // skips (or fails under CI) without PostgreSQL
	t.Setenv("OUTBOX_POSTGRES_URL", testenv.PostgresURL())
	t.Setenv("OUTBOX_KAFKA_BROKERS", strings.Join(testenv.Kafka(t), ","))
	table := testenv.Table("quickstart")
	t.Setenv("OUTBOX_TABLE", table)
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), "DROP TABLE IF EXISTS "+table+", "+table+"_claims")
		_, _ = pool.Exec(context.Background(), "DELETE FROM outbox_migrations WHERE table_name = $1", table)
	})
	check(t)
}

// As a newcomer runs it, with nothing set: SQLite in a file and the
// embedded development broker, which is what the demo needs no server for.
func TestRunDefaults(t *testing.T) {
	for _, v := range []string{"OUTBOX_POSTGRES_URL", "OUTBOX_MYSQL_DSN", "OUTBOX_KAFKA_BROKERS", "OUTBOX_TABLE"} {
		t.Setenv(v, "")
	}
	t.Setenv("OUTBOX_SQLITE_PATH", filepath.Join(t.TempDir(), "demo.db"))
	out := check(t)
	if !strings.Contains(out, "outbox table on SQLite") || !strings.Contains(out, "embedded development Kafka broker") {
		t.Fatalf("not SQLite and the embedded broker:\n%s", out)
	}
}

// On SQLite with the real broker.
func TestRunSQLite(t *testing.T) {
	t.Setenv("OUTBOX_KAFKA_BROKERS", strings.Join(testenv.Kafka(t), ","))
	t.Setenv("OUTBOX_SQLITE_PATH", filepath.Join(t.TempDir(), "demo.db"))
	check(t)
}

// Given a MySQL DSN, the quickstart runs on MySQL/MariaDB.
func TestRunMySQL(t *testing.T) {
	db := testenv.MySQL(t)
	t.Setenv("OUTBOX_KAFKA_BROKERS", strings.Join(testenv.Kafka(t), ","))
	table := testenv.Table("quickstart")
	t.Setenv("OUTBOX_TABLE", table)
	t.Setenv("OUTBOX_MYSQL_DSN", testenv.MySQLDSN())
	t.Cleanup(func() {
		_, _ = db.Exec("DROP TABLE IF EXISTS " + table + ", " + table + "_claims")
		_, _ = db.Exec("DELETE FROM outbox_migrations WHERE table_name = ?", table)
	})
	check(t)
}

func check(t *testing.T) string {
	t.Helper()
	var out testenv.Buffer
	if err := run(&out, ""); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, line := range []string{
		`transactions committed: +16`, `transactions rolled back: +5`, `events committed: +16`,
		`events the relay published: +1[6-9]`, `events the consumer received from Kafka: +16`,
		`lost: +0`, `from rolled-back transactions: +0`, `duplicates: +0`,
	} {
		if !regexp.MustCompile(`(?m)^` + line + `$`).MatchString(out.String()) {
			t.Fatalf("summary lacks %q:\n%s", line, out.String())
		}
	}
	return out.String()
}

// Package testenv gives tests the addresses of the services they need, from
// the environment with local defaults. When CI is set a missing service fails
// the test; elsewhere it skips it, so `go test ./...` runs on a laptop without
// MariaDB.
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // database/sql driver "mysql"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Default addresses of the local services.
const (
	DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	DefaultMySQLDSN    = "root@tcp(127.0.0.1:3306)/test?parseTime=true&multiStatements=true"
)

// PostgresURL returns OUTBOX_POSTGRES_URL or the local default.
func PostgresURL() string { return getenv("OUTBOX_POSTGRES_URL", DefaultPostgresURL) }

// MySQLDSN returns OUTBOX_MYSQL_DSN or the local default.
func MySQLDSN() string { return getenv("OUTBOX_MYSQL_DSN", DefaultMySQLDSN) }

func getenv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// Unavailable fails the test under CI and skips it elsewhere.
func Unavailable(t testing.TB, what string, err error) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is required under CI: %v", what, err)
	}
	t.Skipf("%s unavailable: %v", what, err)
}

// Postgres returns a pool on the test PostgreSQL, closed at the end of the test.
func Postgres(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), PostgresURL())
	if err == nil {
		t.Cleanup(pool.Close) // also when the ping fails: the pool has goroutines
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = pool.Ping(ctx)
		cancel()
	}
	if err != nil {
		Unavailable(t, "PostgreSQL", err)
	}
	return pool
}

// MySQL returns a *sql.DB on the test MySQL/MariaDB, closed at the end of the test.
func MySQL(t testing.TB) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", MySQLDSN())
	if err == nil {
		t.Cleanup(func() { db.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = db.PingContext(ctx)
		cancel()
	}
	if err != nil {
		Unavailable(t, "MySQL/MariaDB", err)
	}
	return db
}

// PingPostgres connects to the test PostgreSQL once and reports why it
// does not answer, for a TestMain (see RunExamples).
func PingPostgres() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, PostgresURL())
	if err != nil {
		return err
	}
	defer pool.Close()
	return pool.Ping(ctx)
}

// RunExamples runs m, whose examples need service, which ping checks. An
// example cannot skip itself: when the service does not answer and CI is
// unset, the examples are left out of the run (as -skip would) and the
// reason is printed; under CI they run and fail. The tests skip or fail on
// their own. Use it as os.Exit(testenv.RunExamples(m, "PostgreSQL",
// testenv.PingPostgres)).
func RunExamples(m *testing.M, service string, ping func() error) int {
	flag.Parse()
	if os.Getenv("CI") == "" {
		if err := ping(); err != nil {
			fmt.Printf("examples skipped: %s unavailable: %v\n", service, err)
			skip := "^Example"
			if s := flag.Lookup("test.skip").Value.String(); s != "" {
				skip = s + "|" + skip
			}
			if err := flag.Set("test.skip", skip); err != nil {
				panic(err)
			}
		}
	}
	return m.Run()
}

// Table returns a fresh table name for one test, so tests run side by side
// against the shared servers: prefix plus random hex.
func Table(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + "_" + hex.EncodeToString(b[:])
}

package testenv

import (
	"context"
	"database/sql"
	"testing"

	"github.com/outboxkit/outbox/migrations"
)

// SeedTable creates table as the Python services create theirs: migration
// 1's statements, with no version recorded.
func SeedTable(t testing.TB, ctx context.Context, db *sql.DB, d migrations.Dialect, table string) {
	t.Helper()
	ms, err := d.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	stmts, err := ms[0].SQL(table, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range stmts {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// Strings returns the first column of query's rows.
func Strings(t testing.TB, db *sql.DB, query string) []string {
	t.Helper()
	rows, err := db.Query(query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

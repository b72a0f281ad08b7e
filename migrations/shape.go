package migrations

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// ErrNotOutboxTable is returned by Up for an existing table that the outbox
// migrations cannot adopt. Nothing has been applied or recorded then.
var ErrNotOutboxTable = errors.New("not an outbox table")

// The Python services' columns, which migration 1 creates and an adopted table must
// have, and those that migration 2 adds and later ones keep. (Migration 2
// also adds lease_owner, lease_token and lease_until, which migration 4
// drops: a table may have them or not.)
var (
	seedColumns  = []string{"id", "aggregate_id", "aggregate_type", "event_type", "event_data", "event_key", "created_at", "published_at", "retry_count", "last_error"}
	relayColumns = []string{"seq", "topic", "headers", "next_attempt_at", "parked_at"}
)

// checkOutboxTable checks, before Up applies anything, that an existing
// table is one the migrations can take over: the Python services' table, or one that
// has the relay's columns too. A table that holds some of the relay's
// columns but not seq is refused, and on MySQL the Python services' table must have
// the index that migration 2 replaces. MySQL commits DDL at once, so what a
// failing step changed would stay; nothing is changed or recorded here.
func checkOutboxTable(ctx context.Context, conn *sql.Conn, d Dialect, table string) error {
	cols, err := d.columns(ctx, conn, table)
	if err != nil || len(cols) == 0 { // no table yet: migration 1 creates it
		return err
	}
	missing := absent(cols, seedColumns)
	relay := absent(cols, relayColumns)
	switch {
	case len(missing) > 0:
		return fmt.Errorf("migrate: %s: %w: lacks the outbox column(s) %s; nothing was applied",
			table, ErrNotOutboxTable, strings.Join(missing, ", "))
	case len(relay) == 0:
		return nil
	case cols["seq"]:
		return fmt.Errorf("migrate: %s: %w: has seq but lacks the relay's column(s) %s; nothing was applied",
			table, ErrNotOutboxTable, strings.Join(relay, ", "))
	case len(relay) < len(relayColumns):
		return fmt.Errorf("migrate: %s: %w: has the relay's column(s) %s but not seq; nothing was applied",
			table, ErrNotOutboxTable, strings.Join(present(cols, relayColumns), ", "))
	}
	if d == MySQL {
		index := "ix_" + tableName(table) + "_unpublished"
		var n int
		if err := conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.statistics
			WHERE table_schema = COALESCE(?, DATABASE()) AND table_name = ? AND index_name = ?`,
			schemaArg(table), tableName(table), index).Scan(&n); err != nil {
			return fmt.Errorf("migrate: %s: %w", table, err)
		}
		if n == 0 {
			return fmt.Errorf("migrate: %s: %w: lacks the outbox index %s; nothing was applied", table, ErrNotOutboxTable, index)
		}
	}
	return nil
}

// columns returns the columns of table, none if it does not exist.
func (d Dialect) columns(ctx context.Context, conn *sql.Conn, table string) (map[string]bool, error) {
	schema, name := schemaArg(table), tableName(table)
	q := `SELECT column_name FROM information_schema.columns WHERE table_schema = COALESCE(?, DATABASE()) AND table_name = ?`
	args := []any{schema, name}
	switch d {
	case SQLite:
		q, args = `SELECT name FROM pragma_table_info(?)`, []any{name}
	case PostgreSQL:
		// Unquoted identifiers are folded to lower case.
		q = `SELECT column_name FROM information_schema.columns WHERE table_schema = COALESCE($1, current_schema()) AND table_name = $2`
		args[1] = strings.ToLower(name)
		if s, ok := schema.(string); ok {
			args[0] = strings.ToLower(s)
		}
	}
	rows, err := conn.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("migrate: %s: columns: %w", table, err)
	}
	defer rows.Close()
	cols := map[string]bool{}
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, err
		}
		cols[strings.ToLower(c)] = true
	}
	return cols, rows.Err()
}

// absent returns the names that are not in cols.
func absent(cols map[string]bool, names []string) []string {
	var out []string
	for _, n := range names {
		if !cols[n] {
			out = append(out, n)
		}
	}
	return out
}

// present returns the names that are in cols.
func present(cols map[string]bool, names []string) []string {
	var out []string
	for _, n := range names {
		if cols[n] {
			out = append(out, n)
		}
	}
	return out
}

// schemaArg returns the schema of a qualified table name, or nil (SQL NULL)
// for the current one.
func schemaArg(table string) any {
	if schema, _, ok := strings.Cut(table, "."); ok {
		return schema
	}
	return nil
}

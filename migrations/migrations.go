// Package migrations holds the versioned SQL of the outbox table for
// PostgreSQL and MySQL/MariaDB, embedded in the binary, and applies it.
//
// Version 1 is the table exactly as the Python services create it
// (CREATE ... IF NOT EXISTS, so an existing table is adopted); version 2 adds
// the relay's columns and indexes, and numbers the rows already in the table
// in write order (created_at, then id); version 3 adds the operators' audit
// table; version 4 the table of claims, <table>_claims (see [ClaimsTable]),
// in place of the lease columns. Up checks an existing table's shape
// before it changes anything and refuses one it cannot adopt. Applying is
// idempotent and safe from several processes at once: a database lock
// serializes appliers and the applied versions are recorded in the
// outbox_migrations table, per outbox table.
//
// The functions take a *sql.DB; with pgx, open one over a pool with
// github.com/jackc/pgx/v5/stdlib.OpenDBFromPool.
//
// Other tables that travel with the outbox (the Watermill inbox of
// contrib/watermill) bring their own [Files] and are applied by the same
// runner, with the same lock and bookkeeping.
package migrations

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
)

//go:embed postgres/*.sql mysql/*.sql sqlite/*.sql
var outboxFiles embed.FS

// Files is a set of versioned migrations for one kind of table:
// <dialect>/<version>_<name>.up.sql and .down.sql for each dialect ("postgres",
// "mysql"), text/template sources in which {{.Table}} is the table name as
// given and {{.Name}} its part after any schema. Statements are separated by
// ";" at the end of a line; lines starting with "--" are comments.
type Files struct {
	fs.FS
	// check, if set, vets an existing table before Up changes anything.
	check func(ctx context.Context, conn *sql.Conn, d Dialect, table string) error
}

// Outbox returns the outbox table's migrations, which Up, Down and List
// apply. Up refuses an existing table that is not the Python services' or
// the relay's outbox table with [ErrNotOutboxTable], before it changes
// anything.
func Outbox() Files { return Files{FS: outboxFiles, check: checkOutboxTable} }

// Dialect is a SQL dialect: its migrations are in the folder of its name.
type Dialect string

// The supported dialects.
const (
	PostgreSQL Dialect = "postgres"
	MySQL      Dialect = "mysql"
	SQLite     Dialect = "sqlite"
)

// Name returns "postgres", "mysql" or "sqlite".
func (d Dialect) Name() string { return string(d) }

// dialectSQL is what applying migrations needs to know of a dialect.
type dialectSQL struct {
	// lock and unlock serialize appliers on one connection.
	lock, unlock string
	// versionTable creates the bookkeeping table.
	versionTable string
	// placeholder returns the n-th (1-based) bind parameter.
	placeholder func(n int) string
}

func (d Dialect) sql() (dialectSQL, error) {
	switch d {
	case PostgreSQL:
		return dialectSQL{
			lock:   "SELECT pg_advisory_lock(7411932051)",
			unlock: "SELECT pg_advisory_unlock(7411932051)",
			versionTable: `CREATE TABLE IF NOT EXISTS outbox_migrations (
    table_name VARCHAR(128) NOT NULL,
    version    INTEGER NOT NULL,
    name       VARCHAR(255) NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (table_name, version))`,
			placeholder: func(n int) string { return "$" + strconv.Itoa(n) },
		}, nil
	case SQLite:
		// SQLite has no advisory lock: a step is one transaction, which
		// takes the database's write lock (open the database with
		// _txlock=immediate, as store/sqlite.Open does), and its statements
		// can run again.
		return dialectSQL{
			lock:   "SELECT 1",
			unlock: "SELECT 1",
			versionTable: `CREATE TABLE IF NOT EXISTS outbox_migrations (
    table_name TEXT NOT NULL,
    version    INTEGER NOT NULL,
    name       TEXT NOT NULL,
    applied_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    PRIMARY KEY (table_name, version))`,
			placeholder: func(int) string { return "?" },
		}, nil
	case MySQL:
		return dialectSQL{
			lock:   "SELECT GET_LOCK('outbox_migrations', 60)",
			unlock: "SELECT RELEASE_LOCK('outbox_migrations')",
			versionTable: `CREATE TABLE IF NOT EXISTS outbox_migrations (
    table_name VARCHAR(128) NOT NULL,
    version    INTEGER NOT NULL,
    name       VARCHAR(255) NOT NULL,
    applied_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (table_name, version))`,
			placeholder: func(int) string { return "?" },
		}, nil
	}
	return dialectSQL{}, fmt.Errorf("%w %q", ErrNoDialect, string(d))
}

// DefaultTable is the Python services' table name.
const DefaultTable = "event_outbox"

// ClaimsTable returns the name of the table that holds the relays' claims on
// the events of an outbox table: the table's name, schema included, with
// "_claims" appended.
func ClaimsTable(table string) string { return table + "_claims" }

var identifier = regexp.MustCompile(`^(?:[A-Za-z_][A-Za-z0-9_]{0,62}\.)?[A-Za-z_][A-Za-z0-9_]{0,47}$`)

// ValidateTable returns an error unless name is a plain SQL identifier,
// optionally schema-qualified ("schema.table"); index names are derived from
// it, hence its shorter limit of 48 characters.
func ValidateTable(name string) error {
	if !identifier.MatchString(name) {
		return fmt.Errorf("outbox: invalid table name %q: want [A-Za-z_][A-Za-z0-9_]*, optionally schema-qualified", name)
	}
	return nil
}

// Migration is one version of the schema.
type Migration struct {
	Version int
	Name    string
	up      string
	down    string
}

// Status is a migration and whether it has been applied to a table.
type Status struct {
	Migration
	Applied bool
}

// Migrations returns d's outbox migrations in version order.
func (d Dialect) Migrations() ([]Migration, error) { return Outbox().Migrations(d) }

// Migrations returns the migrations of f for d, in version order.
func (f Files) Migrations(d Dialect) ([]Migration, error) {
	if _, err := d.sql(); err != nil {
		return nil, err
	}
	entries, err := fs.Glob(f, string(d)+"/*.up.sql")
	if err != nil {
		return nil, err
	}
	var ms []Migration
	for _, path := range entries {
		base := strings.TrimSuffix(strings.TrimPrefix(path, string(d)+"/"), ".up.sql")
		num, name, _ := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if err != nil {
			return nil, fmt.Errorf("migration %s: bad version: %w", path, err)
		}
		up, err := fs.ReadFile(f, path)
		if err != nil {
			return nil, err
		}
		down, err := fs.ReadFile(f, string(d)+"/"+base+".down.sql")
		if err != nil {
			return nil, fmt.Errorf("migration %s: %w", base, err)
		}
		ms = append(ms, Migration{Version: v, Name: name, up: string(up), down: string(down)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	return ms, nil
}

// SQL returns the up (or down) statements of m for table.
func (m Migration) SQL(table string, up bool) ([]string, error) {
	if err := ValidateTable(table); err != nil {
		return nil, err
	}
	src := m.down
	if up {
		src = m.up
	}
	tmpl, err := template.New(m.Name).Parse(src)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, struct{ Table, Name string }{table, tableName(table)}); err != nil {
		return nil, err
	}
	var stmts []string
	for _, s := range strings.Split(b.String(), ";\n") {
		if s = strings.TrimSpace(stripComments(s)); s != "" {
			stmts = append(stmts, s)
		}
	}
	return stmts, nil
}

// tableName returns table without its schema.
func tableName(table string) string {
	if _, name, ok := strings.Cut(table, "."); ok {
		return name
	}
	return table
}

func stripComments(s string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "--") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// Up applies every outbox migration of d that table lacks, in order.
func Up(ctx context.Context, db *sql.DB, d Dialect, table string) error {
	return Outbox().Up(ctx, db, d, table)
}

// Down reverts the last applied outbox migration of table. Reverting version
// 1 drops the table with every event in it.
func Down(ctx context.Context, db *sql.DB, d Dialect, table string) error {
	return Outbox().Down(ctx, db, d, table)
}

// List returns d's outbox migrations and whether each has been applied to
// table.
func List(ctx context.Context, db *sql.DB, d Dialect, table string) ([]Status, error) {
	return Outbox().List(ctx, db, d, table)
}

// Up applies every migration of f that table lacks, in order.
func (f Files) Up(ctx context.Context, db *sql.DB, d Dialect, table string) error {
	return f.migrate(ctx, db, d, table, func(ms []Migration, applied map[int]bool) []step {
		var steps []step
		for _, m := range ms {
			if !applied[m.Version] {
				steps = append(steps, step{m, true})
			}
		}
		return steps
	})
}

// Down reverts the last applied migration of f on table.
func (f Files) Down(ctx context.Context, db *sql.DB, d Dialect, table string) error {
	return f.migrate(ctx, db, d, table, func(ms []Migration, applied map[int]bool) []step {
		for i := len(ms) - 1; i >= 0; i-- {
			if applied[ms[i].Version] {
				return []step{{ms[i], false}}
			}
		}
		return nil
	})
}

// List returns the migrations of f and whether each has been applied to
// table.
func (f Files) List(ctx context.Context, db *sql.DB, d Dialect, table string) ([]Status, error) {
	var out []Status
	err := f.migrate(ctx, db, d, table, func(ms []Migration, applied map[int]bool) []step {
		for _, m := range ms {
			out = append(out, Status{m, applied[m.Version]})
		}
		return nil
	})
	return out, err
}

type step struct {
	m  Migration
	up bool
}

// migrate applies the steps that plan picks, on one connection that holds
// the dialect's lock. Versions are recorded per table name in
// outbox_migrations, whatever set of files they come from.
func (f Files) migrate(ctx context.Context, db *sql.DB, d Dialect, table string, plan func([]Migration, map[int]bool) []step) (err error) {
	if err := ValidateTable(table); err != nil {
		return err
	}
	dsql, err := d.sql()
	if err != nil {
		return err
	}
	ms, err := f.Migrations(d)
	if err != nil {
		return err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, dsql.lock); err != nil {
		return fmt.Errorf("migrate: lock: %w", err)
	}
	defer func() {
		if _, uerr := conn.ExecContext(context.WithoutCancel(ctx), dsql.unlock); uerr != nil && err == nil {
			err = fmt.Errorf("migrate: unlock: %w", uerr)
		}
	}()
	defer func() {
		if err != nil {
			// A step that stopped halfway may leave session state behind
			// (MySQL's LOCK TABLES, a prepared statement): end the session,
			// and with it the applier's lock, rather than pool it.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	if _, err := conn.ExecContext(ctx, dsql.versionTable); err != nil {
		return fmt.Errorf("migrate: version table: %w", err)
	}
	applied := map[int]bool{}
	rows, err := conn.QueryContext(ctx, "SELECT version FROM outbox_migrations WHERE table_name = "+dsql.placeholder(1), table)
	if err != nil {
		return fmt.Errorf("migrate: read versions: %w", err)
	}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return err
		}
		applied[v] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	steps := plan(ms, applied)
	if f.check != nil && len(steps) > 0 && steps[0].up {
		if err := f.check(ctx, conn, d, table); err != nil {
			return err
		}
	}
	for _, s := range steps {
		if err := apply(ctx, conn, dsql, table, s); err != nil {
			return err
		}
	}
	return nil
}

// apply runs one step in a transaction. PostgreSQL rolls DDL back with it;
// MySQL commits DDL implicitly, so its statements are written to be re-run.
func apply(ctx context.Context, conn *sql.Conn, dsql dialectSQL, table string, s step) error {
	stmts, err := s.m.SQL(table, s.up)
	if err != nil {
		return err
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, q := range stmts {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("migration %d_%s on %s: %w", s.m.Version, s.m.Name, table, err)
		}
	}
	p := dsql.placeholder
	if s.up {
		_, err = tx.ExecContext(ctx, fmt.Sprintf("INSERT INTO outbox_migrations (table_name, version, name) VALUES (%s, %s, %s)", p(1), p(2), p(3)), table, s.m.Version, s.m.Name)
	} else {
		_, err = tx.ExecContext(ctx, fmt.Sprintf("DELETE FROM outbox_migrations WHERE table_name = %s AND version = %s", p(1), p(2)), table, s.m.Version)
	}
	if err != nil {
		return fmt.Errorf("migration %d_%s: record version: %w", s.m.Version, s.m.Name, err)
	}
	return tx.Commit()
}

// ErrNoDialect is returned by DialectFor for an unknown driver name.
var ErrNoDialect = errors.New("migrations: unknown dialect")

// DialectFor returns the dialect for a driver or URL scheme name: "postgres",
// "postgresql", "pgx", "mysql", "mariadb", "sqlite" or "sqlite3".
func DialectFor(name string) (Dialect, error) {
	switch name {
	case "postgres", "postgresql", "pgx":
		return PostgreSQL, nil
	case "sqlite", "sqlite3":
		return SQLite, nil
	case "mysql", "mariadb":
		return MySQL, nil
	}
	return "", fmt.Errorf("%w %q", ErrNoDialect, name)
}

package outboxwatermill

import (
	"cmp"
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"text/template"

	"github.com/outboxkit/outbox/migrations"
)

// The inbox's versioned SQL lives here rather than in package migrations,
// whose files all belong to the outbox table.
//
//go:embed inbox/postgres/*.sql inbox/mysql/*.sql
var inboxFiles embed.FS

// inboxDialect holds what the applier needs per dialect. Its bookkeeping
// table and lock are its own, so it never waits for, nor is confused with,
// the outbox's migrations.
type inboxDialect struct {
	dir          string
	lock, unlock string
	versionTable string
	param        func(n int) string
}

var inboxDialects = map[string]inboxDialect{
	migrations.PostgreSQL.Name(): {
		dir:    "inbox/postgres",
		lock:   "SELECT pg_advisory_lock(7411932052)",
		unlock: "SELECT pg_advisory_unlock(7411932052)",
		versionTable: `CREATE TABLE IF NOT EXISTS outbox_inbox_migrations (
    table_name VARCHAR(128) NOT NULL,
    version    INTEGER NOT NULL,
    name       VARCHAR(255) NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (table_name, version))`,
		param: func(n int) string { return "$" + strconv.Itoa(n) },
	},
	migrations.MySQL.Name(): {
		dir:    "inbox/mysql",
		lock:   "SELECT GET_LOCK('outbox_inbox_migrations', 60)",
		unlock: "SELECT RELEASE_LOCK('outbox_inbox_migrations')",
		versionTable: `CREATE TABLE IF NOT EXISTS outbox_inbox_migrations (
    table_name VARCHAR(128) NOT NULL,
    version    INTEGER NOT NULL,
    name       VARCHAR(255) NOT NULL,
    applied_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (table_name, version))`,
		param: func(int) string { return "?" },
	},
}

type inboxMigration struct {
	version  int
	name     string
	up, down string
}

// MigrateInbox creates or upgrades the inbox table (DefaultInboxTable when
// table is "") in dialect d, applying each versioned migration it lacks, in
// order. Like package migrations it is idempotent and safe from several
// processes at once: a database lock serializes appliers and the applied
// versions are recorded per table in outbox_inbox_migrations. With pgx, open
// db over a pool with github.com/jackc/pgx/v5/stdlib.OpenDBFromPool.
func MigrateInbox(ctx context.Context, db *sql.DB, d migrations.Dialect, table string) error {
	return migrateInbox(ctx, db, d, table, true)
}

// RevertInbox reverts the last applied inbox migration of table. Reverting
// version 1 drops the table, and with it the record of what was handled.
func RevertInbox(ctx context.Context, db *sql.DB, d migrations.Dialect, table string) error {
	return migrateInbox(ctx, db, d, table, false)
}

func migrateInbox(ctx context.Context, db *sql.DB, d migrations.Dialect, table string, up bool) (err error) {
	table = cmp.Or(table, DefaultInboxTable)
	if err := migrations.ValidateTable(table); err != nil {
		return err
	}
	dia, ok := inboxDialects[d.Name()]
	if !ok {
		return fmt.Errorf("migrate inbox: unknown dialect %q", d.Name())
	}
	ms, err := dia.migrations()
	if err != nil {
		return err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate inbox: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, dia.lock); err != nil {
		return fmt.Errorf("migrate inbox: lock: %w", err)
	}
	defer func() {
		if _, uerr := conn.ExecContext(context.WithoutCancel(ctx), dia.unlock); uerr != nil && err == nil {
			err = fmt.Errorf("migrate inbox: unlock: %w", uerr)
		}
	}()
	if _, err := conn.ExecContext(ctx, dia.versionTable); err != nil {
		return fmt.Errorf("migrate inbox: version table: %w", err)
	}
	applied, err := dia.applied(ctx, conn, table)
	if err != nil {
		return err
	}
	if !up {
		for i := len(ms) - 1; i >= 0; i-- {
			if applied[ms[i].version] {
				return dia.apply(ctx, conn, table, ms[i], false)
			}
		}
		return nil
	}
	for _, m := range ms {
		if !applied[m.version] {
			if err := dia.apply(ctx, conn, table, m, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// migrations reads the dialect's migrations in version order.
func (dia inboxDialect) migrations() ([]inboxMigration, error) {
	paths, err := fs.Glob(inboxFiles, dia.dir+"/*.up.sql")
	if err != nil {
		return nil, err
	}
	var ms []inboxMigration
	for _, path := range paths {
		base := strings.TrimSuffix(strings.TrimPrefix(path, dia.dir+"/"), ".up.sql")
		num, name, _ := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if err != nil {
			return nil, fmt.Errorf("inbox migration %s: bad version: %w", path, err)
		}
		up, err := inboxFiles.ReadFile(path)
		if err != nil {
			return nil, err
		}
		down, err := inboxFiles.ReadFile(dia.dir + "/" + base + ".down.sql")
		if err != nil {
			return nil, fmt.Errorf("inbox migration %s: %w", base, err)
		}
		ms = append(ms, inboxMigration{version: v, name: name, up: string(up), down: string(down)})
	}
	slices.SortFunc(ms, func(a, b inboxMigration) int { return a.version - b.version })
	return ms, nil
}

func (dia inboxDialect) applied(ctx context.Context, conn *sql.Conn, table string) (map[int]bool, error) {
	rows, err := conn.QueryContext(ctx, "SELECT version FROM outbox_inbox_migrations WHERE table_name = "+dia.param(1), table)
	if err != nil {
		return nil, fmt.Errorf("migrate inbox: read versions: %w", err)
	}
	defer rows.Close()
	applied := map[int]bool{}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("migrate inbox: read versions: %w", err)
		}
		applied[v] = true
	}
	return applied, rows.Err()
}

// apply runs one migration in a transaction. PostgreSQL rolls DDL back with
// it; MySQL commits DDL implicitly, so its statements are written to be
// re-run.
func (dia inboxDialect) apply(ctx context.Context, conn *sql.Conn, table string, m inboxMigration, up bool) error {
	src := m.down
	if up {
		src = m.up
	}
	stmts, err := inboxStatements(src, table)
	if err != nil {
		return fmt.Errorf("inbox migration %d_%s: %w", m.version, m.name, err)
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("inbox migration %d_%s: %w", m.version, m.name, err)
	}
	defer tx.Rollback()
	for _, q := range stmts {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("inbox migration %d_%s on %s: %w", m.version, m.name, table, err)
		}
	}
	p := dia.param
	if up {
		_, err = tx.ExecContext(ctx, "INSERT INTO outbox_inbox_migrations (table_name, version, name) VALUES ("+
			p(1)+", "+p(2)+", "+p(3)+")", table, m.version, m.name)
	} else {
		_, err = tx.ExecContext(ctx, "DELETE FROM outbox_inbox_migrations WHERE table_name = "+p(1)+
			" AND version = "+p(2), table, m.version)
	}
	if err != nil {
		return fmt.Errorf("inbox migration %d_%s: record version: %w", m.version, m.name, err)
	}
	return tx.Commit()
}

// inboxStatements fills table into src and splits it into statements,
// without comment lines.
func inboxStatements(src, table string) ([]string, error) {
	tmpl, err := template.New("inbox").Parse(src)
	if err != nil {
		return nil, err
	}
	_, name, found := strings.Cut(table, ".")
	if !found {
		name = table
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, struct{ Table, Name string }{table, name}); err != nil {
		return nil, err
	}
	var stmts []string
	for _, s := range strings.Split(b.String(), ";\n") {
		var lines []string
		for _, l := range strings.Split(s, "\n") {
			if !strings.HasPrefix(strings.TrimSpace(l), "--") {
				lines = append(lines, l)
			}
		}
		if s = strings.TrimSpace(strings.Join(lines, "\n")); s != "" {
			stmts = append(stmts, s)
		}
	}
	return stmts, nil
}

package outboxwatermill

import (
	"cmp"
	"context"
	"database/sql"
	"embed"
	"io/fs"

	"github.com/outboxkit/outbox/migrations"
)

//go:embed inbox/postgres/*.sql inbox/mysql/*.sql
var inboxFiles embed.FS

// InboxMigrations returns the inbox table's versioned migrations. Package
// migrations applies them like the outbox's: idempotent, safe from several
// processes at once, versions recorded per table in outbox_migrations.
func InboxMigrations() migrations.Files { return migrations.Files{FS: mustSub(inboxFiles, "inbox")} }

// MigrateInbox creates or upgrades the inbox table (DefaultInboxTable when
// table is "") in dialect d. With pgx, open db over a pool with
// github.com/jackc/pgx/v5/stdlib.OpenDBFromPool.
func MigrateInbox(ctx context.Context, db *sql.DB, d migrations.Dialect, table string) error {
	return InboxMigrations().Up(ctx, db, d, cmp.Or(table, DefaultInboxTable))
}

// RevertInbox reverts the last applied inbox migration of table. Reverting
// version 1 drops the table, and with it the record of what was handled.
func RevertInbox(ctx context.Context, db *sql.DB, d migrations.Dialect, table string) error {
	return InboxMigrations().Down(ctx, db, d, cmp.Or(table, DefaultInboxTable))
}

// mustSub roots fsys at dir, which the embed directive guarantees exists.
func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err)
	}
	return sub
}

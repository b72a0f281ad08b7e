package testenv

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/stdlib"

	"github.com/outboxkit/outbox/migrations"
	"github.com/outboxkit/outbox/store/postgres"
)

// PostgresStore returns a store over a fresh, migrated table of its own,
// dropped at the end of the test. cfg.Table is ignored.
func PostgresStore(t testing.TB, cfg postgres.Config) *postgres.Store {
	t.Helper()
	pool := Postgres(t)
	cfg.Table = Table("outbox")
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	ctx := context.Background()
	if err := migrations.Up(ctx, db, migrations.PostgreSQL, cfg.Table); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		_, _ = pool.Exec(ctx, "DROP TABLE IF EXISTS "+cfg.Table+", "+migrations.ClaimsTable(cfg.Table))
		_, _ = pool.Exec(ctx, "DELETE FROM outbox_migrations WHERE table_name = $1", cfg.Table)
	})
	st, err := postgres.New(pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

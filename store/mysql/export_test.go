package mysql

import (
	"context"
	"database/sql"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox/store"
)

// WindowSQL is the claim's window statement, for the plan tests.
func WindowSQL(s *Store) string { return s.sql.window }

// ClaimWindow is the claim window's size in limits.
const ClaimWindow = claimWindow

// ClaimOn runs a claim's transaction on conn, without the claim lock, so
// that a test can read the session's counters around it.
func ClaimOn(ctx context.Context, s *Store, conn *sql.Conn, p store.ClaimParams) (store.Claim, error) {
	return s.claim(ctx, conn, p, uuid.New())
}

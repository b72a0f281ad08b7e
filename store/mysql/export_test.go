package mysql

import (
	"context"
	"database/sql"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox/store"
)

// ClaimSQL and ClaimPastHeldSQL expose the claim's statements, and ClaimArgs
// and ClaimPastHeldArgs their arguments for a limit, so that tests can run
// them in a transaction of their own.
func ClaimSQL(s *Store) string          { return s.sql.claim }
func ClaimPastHeldSQL(s *Store) string  { return s.sql.claimPastHeld }
func ClaimArgs(limit int) []any         { return claimArgs(limit) }
func ClaimPastHeldArgs(limit int) []any { return claimPastHeldArgs(limit) }

// ClaimWindow is the claim window's size in limits.
const ClaimWindow = claimWindow

// ClaimOn runs a claim's transaction on conn, without the claim lock, so
// that a test can read the session's counters around it.
func ClaimOn(ctx context.Context, s *Store, conn *sql.Conn, p store.ClaimParams) (store.Claim, error) {
	return s.claim(ctx, conn, p, uuid.New())
}

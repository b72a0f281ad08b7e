package mysql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox/store"
)

// releaseTimeout bounds RELEASE_LOCK after a claim, which runs even when the
// claim's context was cancelled.
const releaseTimeout = 5 * time.Second

// Claim implements [store.Store].
func (s *Store) Claim(ctx context.Context, p store.ClaimParams) (store.Claim, error) {
	token := uuid.New()
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return store.Claim{Token: token}, fmt.Errorf("claim: %w", err)
	}
	defer conn.Close()
	if err := s.lock(ctx, conn, p.Lease); err != nil {
		return store.Claim{Token: token}, err
	}
	c, err := s.claim(ctx, conn, p, token)
	s.unlock(ctx, conn)
	if err != nil {
		return store.Claim{Token: token}, err
	}
	return c, nil
}

// lock takes the table's claim lock on conn. GET_LOCK waits at most the
// lease (whole seconds, at least one), or until ctx is done if that is
// sooner: a claimer that waited a whole lease for it had better report that
// something is stuck.
func (s *Store) lock(ctx context.Context, conn *sql.Conn, lease time.Duration) error {
	wait := lease
	if d, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(d))
	}
	var got sql.NullInt64
	err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, ?)", s.lockName, max(1, int64(math.Ceil(wait.Seconds())))).Scan(&got)
	switch {
	case err != nil:
		return fmt.Errorf("claim: lock: %w", err)
	case !got.Valid:
		return errors.New("claim: lock: interrupted")
	case got.Int64 != 1:
		return fmt.Errorf("claim: lock: not granted within %v", wait)
	}
	return nil
}

// unlock releases the claim lock. GET_LOCK belongs to the session, not to a
// transaction: a connection that went back to the pool still holding it
// would stop every claim on the table. When the release cannot be confirmed
// the connection is discarded instead, which ends the session and its lock;
// either way the lock is gone and a claim that committed stands.
func (s *Store) unlock(ctx context.Context, conn *sql.Conn) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	var released sql.NullInt64
	err := conn.QueryRowContext(ctx, "SELECT RELEASE_LOCK(?)", s.lockName).Scan(&released)
	if err != nil || !released.Valid || released.Int64 != 1 {
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	}
}

// claim selects and leases the events in one transaction at READ COMMITTED
// on conn, which holds the claim lock.
func (s *Store) claim(ctx context.Context, conn *sql.Conn, p store.ClaimParams, token uuid.UUID) (store.Claim, error) {
	c := store.Claim{Token: token}
	tx, err := conn.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return c, fmt.Errorf("claim: begin: %w", err)
	}
	defer tx.Rollback()
	// The first statement looks for the rows in a window of pending rows
	// read from the index alone. When it reaches the end of a full window
	// without finding the limit, rows held back by a backoff or a parked row
	// may fill the window, and the second statement looks past them (see
	// statements.go). The second's result replaces the first's, which it
	// contains unless earlier rows changed in between; a row that the first
	// locked and the second did not take stays locked, not leased, until
	// the transaction ends.
	var past bool
	if c.Records, c.Now, past, err = s.selectClaim(ctx, tx, s.sql.claim, claimArgs(p.Limit)); err != nil {
		return c, err
	}
	if past {
		if c.Records, c.Now, _, err = s.selectClaim(ctx, tx, s.sql.claimPastHeld, claimPastHeldArgs(p.Limit)); err != nil {
			return c, err
		}
	}
	if c.Records, err = s.inKeyOrder(ctx, tx, c.Records); err != nil {
		return store.Claim{Token: token}, err
	}
	if len(c.Records) == 0 {
		// Nothing to lease; the deferred rollback ends the transaction.
		return c, nil
	}
	args := []any{p.Owner, token.String(), p.Lease.Microseconds()}
	for _, r := range c.Records {
		args = append(args, r.ID.String())
	}
	if _, err := tx.ExecContext(ctx, inList(s.sql.lease, len(c.Records)), args...); err != nil {
		return store.Claim{Token: token}, fmt.Errorf("claim: lease: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return store.Claim{Token: token}, fmt.Errorf("claim: commit: %w", err)
	}
	return c, nil
}

// selectClaim runs one of the claim statements and returns its rows, the
// database clock (zero when there are no rows), and whether it returned the
// sentinel of a full window (see statements.claim).
func (s *Store) selectClaim(ctx context.Context, tx *sql.Tx, query string, args []any) (recs []store.Record, now time.Time, sentinel bool, err error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, now, false, fmt.Errorf("claim: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		// The columns of c are NULL in the sentinel.
		var r store.Record
		var id, eventType, aggregateType, aggregateID sql.NullString
		var seq, attempts, created sql.NullInt64
		var headers []byte
		var micros int64
		if err := rows.Scan(&id, &seq, &r.Topic, &r.Key, &eventType, &aggregateType, &aggregateID,
			&r.Payload, &headers, &attempts, &created, &r.Reclaimed, &micros); err != nil {
			return nil, now, false, fmt.Errorf("claim: scan: %w", err)
		}
		if !id.Valid {
			sentinel = true
			continue
		}
		if r.ID, err = uuid.Parse(id.String); err != nil {
			return nil, now, false, fmt.Errorf("claim: event id %q: %w", id.String, err)
		}
		if err := json.Unmarshal(headers, &r.Headers); err != nil {
			return nil, now, false, fmt.Errorf("claim: headers of %s: %w", id.String, err)
		}
		r.Seq, r.Attempts = seq.Int64, int(attempts.Int64)
		r.EventType, r.AggregateType, r.AggregateID = eventType.String, aggregateType.String, aggregateID.String
		r.CreatedAt, now = time.UnixMicro(created.Int64), time.UnixMicro(micros)
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, now, false, fmt.Errorf("claim: %w", err)
	}
	return recs, now, sentinel, nil
}

// inKeyOrder returns recs without the rows that an earlier pending row of
// their key, not among recs, must precede (see statements.overtaking).
func (s *Store) inKeyOrder(ctx context.Context, tx *sql.Tx, recs []store.Record) ([]store.Record, error) {
	var keys, ids []any
	seen := map[string]bool{}
	var last int64
	for _, r := range recs {
		if r.Key != "" && !seen[r.Key] {
			seen[r.Key] = true
			keys = append(keys, r.Key)
		}
		ids = append(ids, r.ID.String())
		last = max(last, r.Seq)
	}
	if len(keys) == 0 {
		return recs, nil
	}
	q := strings.NewReplacer("{keys}", placeholders("?", len(keys)), "{ids}", placeholders("?", len(ids))).Replace(s.sql.overtaking)
	args := append(append(keys, last), ids...)
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("claim: key order: %w", err)
	}
	defer rows.Close()
	first := map[string]int64{}
	for rows.Next() {
		var key string
		var seq int64
		if err := rows.Scan(&key, &seq); err != nil {
			return nil, fmt.Errorf("claim: key order: %w", err)
		}
		first[key] = seq
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("claim: key order: %w", err)
	}
	if len(first) == 0 {
		return recs, nil
	}
	kept := recs[:0]
	for _, r := range recs {
		if seq, ok := first[r.Key]; ok && r.Seq > seq {
			continue
		}
		kept = append(kept, r)
	}
	return kept, nil
}

// MarkPublished implements [store.Store].
func (s *Store) MarkPublished(ctx context.Context, token uuid.UUID, ids []uuid.UUID) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	n, err := s.exec(ctx, inList(s.sql.mark, len(ids)), idArgs(token.String(), ids)...)
	if err != nil {
		return 0, fmt.Errorf("mark published: %w", err)
	}
	return int(n), nil
}

// Fail implements [store.Store].
func (s *Store) Fail(ctx context.Context, token uuid.UUID, failures []store.Failure) error {
	if len(failures) == 0 {
		return nil
	}
	args := make([]any, 0, 4*len(failures)+1)
	for _, f := range failures {
		args = append(args, f.ID.String(), store.TruncateError(f.Err), f.Delay.Microseconds(), f.Park)
	}
	args = append(args, token.String())
	if _, err := s.exec(ctx, failRows(s.sql.fail, len(failures)), args...); err != nil {
		return fmt.Errorf("record failure: %w", err)
	}
	return nil
}

// Release implements [store.Store].
func (s *Store) Release(ctx context.Context, token uuid.UUID, ids []uuid.UUID, delay time.Duration) error {
	if len(ids) == 0 {
		return nil
	}
	us := delay.Microseconds()
	args := append([]any{us, us}, idArgs(token.String(), ids)...)
	if _, err := s.exec(ctx, inList(s.sql.release, len(ids)), args...); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	return nil
}

// DeletePublished implements [store.Store]. It reads the IDs of the chunk
// first, without locking, and deletes them by primary key: a DELETE that
// walked the index in published_at order would lock the entries it passes.
func (s *Store) DeletePublished(ctx context.Context, olderThan time.Duration, limit int) (int, error) {
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, s.sql.expired, olderThan.Microseconds(), limit)
		if err != nil {
			return err
		}
		var ids []any
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil || len(ids) == 0 {
			return err
		}
		res, err := tx.ExecContext(ctx, inList(s.sql.deletePublished, len(ids)), append([]any{olderThan.Microseconds()}, ids...)...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("delete published: %w", err)
	}
	return int(n), nil
}

// exec runs one statement in a transaction of its own (see inTx) and
// returns the number of rows it changed.
func (s *Store) exec(ctx context.Context, query string, args ...any) (int64, error) {
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}

// inTx runs fn in a transaction at READ COMMITTED. Every statement of the
// relay and of the operator's commands that changes rows runs this way: at
// MySQL's default REPEATABLE READ, locking reads take next-key locks, which
// make business transactions that insert events wait, and deadlock with them.
func (s *Store) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// Stats implements [store.Store].
func (s *Store) Stats(ctx context.Context) (store.Stats, error) {
	var st store.Stats
	var age int64
	if err := s.db.QueryRowContext(ctx, s.sql.stats).Scan(&st.Pending, &age, &st.Parked); err != nil {
		return st, fmt.Errorf("stats: %w", err)
	}
	st.OldestPendingAge = time.Duration(age) * time.Microsecond
	return st, nil
}

// idArgs returns first followed by ids as strings, the arguments of a
// statement that ends in "id IN ({ids})".
func idArgs(first any, ids []uuid.UUID) []any {
	args := make([]any, 0, len(ids)+1)
	args = append(args, first)
	for _, id := range ids {
		args = append(args, id.String())
	}
	return args
}

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
	rows, err := tx.QueryContext(ctx, s.sql.claim, p.Limit)
	if err != nil {
		return c, fmt.Errorf("claim: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r store.Record
		var id string
		var headers []byte
		var created, now int64
		if err := rows.Scan(&id, &r.Seq, &r.Topic, &r.Key, &r.EventType, &r.AggregateType, &r.AggregateID,
			&r.Payload, &headers, &r.Attempts, &created, &r.Reclaimed, &now); err != nil {
			return c, fmt.Errorf("claim: scan: %w", err)
		}
		if r.ID, err = uuid.Parse(id); err != nil {
			return c, fmt.Errorf("claim: event id %q: %w", id, err)
		}
		if err := json.Unmarshal(headers, &r.Headers); err != nil {
			return c, fmt.Errorf("claim: headers of %s: %w", id, err)
		}
		r.CreatedAt, c.Now = time.UnixMicro(created), time.UnixMicro(now)
		c.Records = append(c.Records, r)
	}
	if err := rows.Err(); err != nil {
		return c, fmt.Errorf("claim: %w", err)
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
	res, err := s.db.ExecContext(ctx, inList(s.sql.mark, len(ids)), idArgs(token.String(), ids)...)
	if err != nil {
		return 0, fmt.Errorf("mark published: %w", err)
	}
	n, err := res.RowsAffected()
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
	if _, err := s.db.ExecContext(ctx, failRows(s.sql.fail, len(failures)), args...); err != nil {
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
	if _, err := s.db.ExecContext(ctx, inList(s.sql.release, len(ids)), args...); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	return nil
}

// DeletePublished implements [store.Store].
func (s *Store) DeletePublished(ctx context.Context, olderThan time.Duration, limit int) (int, error) {
	res, err := s.db.ExecContext(ctx, s.sql.deletePublished, olderThan.Microseconds(), limit)
	if err != nil {
		return 0, fmt.Errorf("delete published: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("delete published: %w", err)
	}
	return int(n), nil
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

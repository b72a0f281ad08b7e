package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/outboxkit/outbox/store"
)

// Claim implements [store.Store].
func (s *Store) Claim(ctx context.Context, p store.ClaimParams) (store.Claim, error) {
	c := store.Claim{Token: uuid.New()}
	// One pipelined batch is one implicit transaction: the advisory lock is
	// held from its own statement until the claim commits, and the claim's
	// snapshot is taken after the lock was granted. The claim's joins must
	// be row lookups whatever the planner estimates (statistics of a table
	// whose pending rows come and go are often stale), so hash and merge
	// joins are off for this transaction.
	b := &pgx.Batch{}
	b.Queue(s.sql.claimLock, s.lockKey)
	b.Queue(s.sql.claim, p.Limit, p.Owner, [16]byte(c.Token), p.Lease.Microseconds())
	br := s.pool.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return c, fmt.Errorf("claim: lock: %w", err)
	}
	rows, err := br.Query()
	if err != nil {
		return c, fmt.Errorf("claim: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r store.Record
		var id [16]byte
		if err := rows.Scan(&id, &r.Seq, &r.Topic, &r.Key, &r.EventType, &r.AggregateType, &r.AggregateID,
			&r.Payload, &r.Headers, &r.Attempts, &r.CreatedAt, &r.Reclaimed, &c.Now); err != nil {
			return c, fmt.Errorf("claim: scan: %w", err)
		}
		r.ID = id
		c.Records = append(c.Records, r)
	}
	if err := rows.Err(); err != nil {
		return store.Claim{Token: c.Token}, fmt.Errorf("claim: %w", err)
	}
	rows.Close()
	if err := br.Close(); err != nil {
		return store.Claim{Token: c.Token}, fmt.Errorf("claim: %w", err)
	}
	return c, nil
}

// MarkPublished implements [store.Store].
func (s *Store) MarkPublished(ctx context.Context, token uuid.UUID, ids []uuid.UUID) (int, error) {
	n, err := s.settle(ctx, s.sql.mark, uuids(ids), [16]byte(token))
	if err != nil {
		return 0, fmt.Errorf("mark published: %w", err)
	}
	return n, nil
}

// DeletePublishedNow implements [store.Deleter].
func (s *Store) DeletePublishedNow(ctx context.Context, token uuid.UUID, ids []uuid.UUID) (int, error) {
	n, err := s.settle(ctx, s.sql.markDelete, uuids(ids), [16]byte(token))
	if err != nil {
		return 0, fmt.Errorf("delete published: %w", err)
	}
	return n, nil
}

// Fail implements [store.Store].
func (s *Store) Fail(ctx context.Context, token uuid.UUID, failures []store.Failure) error {
	ids := make([][16]byte, len(failures))
	errs := make([]string, len(failures))
	delays := make([]int64, len(failures))
	park := make([]bool, len(failures))
	for i, f := range failures {
		ids[i], errs[i], delays[i], park[i] = f.ID, store.TruncateError(f.Err), f.Delay.Microseconds(), f.Park
	}
	if _, err := s.settle(ctx, s.sql.fail, ids, errs, delays, park, [16]byte(token)); err != nil {
		return fmt.Errorf("record failure: %w", err)
	}
	return nil
}

// Release implements [store.Store].
func (s *Store) Release(ctx context.Context, token uuid.UUID, ids []uuid.UUID, delay time.Duration) error {
	if _, err := s.settle(ctx, s.sql.release, uuids(ids), [16]byte(token), delay.Microseconds()); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	return nil
}

// settle runs one of the statements that settle events of a claim and
// returns how many events it changed.
func (s *Store) settle(ctx context.Context, query string, args ...any) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, query, args...).Scan(&n)
	return n, err
}

// DeletePublished implements [store.Store].
func (s *Store) DeletePublished(ctx context.Context, olderThan time.Duration, limit int) (int, error) {
	tag, err := s.pool.Exec(ctx, s.sql.deletePublished, olderThan.Microseconds(), limit)
	if err != nil {
		return 0, fmt.Errorf("delete published: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// Stats implements [store.Store].
func (s *Store) Stats(ctx context.Context) (store.Stats, error) {
	var st store.Stats
	var age float64
	if err := s.pool.QueryRow(ctx, s.sql.stats).Scan(&st.Pending, &age, &st.Parked); err != nil {
		return st, fmt.Errorf("stats: %w", err)
	}
	st.OldestPendingAge = time.Duration(age * float64(time.Second))
	return st, nil
}

func uuids(ids []uuid.UUID) [][16]byte {
	out := make([][16]byte, len(ids))
	for i, id := range ids {
		out[i] = id
	}
	return out
}

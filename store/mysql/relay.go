package mysql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"math"
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

// claim reads the claims and the window and records its claim, in one
// transaction at READ COMMITTED on conn, which holds the claim lock. Every
// claim before it committed before it took the lock, so it sees them all;
// settles may end claims meanwhile, which only frees what this claim leaves
// alone until its next run.
func (s *Store) claim(ctx context.Context, conn *sql.Conn, p store.ClaimParams, token uuid.UUID) (store.Claim, error) {
	c := store.Claim{Token: token}
	tx, err := conn.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return c, fmt.Errorf("claim: begin: %w", err)
	}
	defer tx.Rollback()
	held, err := s.readClaims(ctx, tx)
	if err != nil {
		return c, err
	}
	if len(held.ended) > 0 {
		// Lock the ended claims first: a settle of theirs in flight
		// finishes before the window is read, and one that comes later
		// waits for this claim and then finds what it took over gone.
		if held.ended, err = s.lockEnded(ctx, tx, held.ended); err != nil {
			return c, err
		}
	}
	var keyed map[uuid.UUID]bool
	if c.Records, keyed, c.Now, err = s.window(ctx, tx, p.Limit, held); err != nil || len(c.Records) == 0 {
		return c, err
	}
	ids, keys := make([]string, len(c.Records)), []string{}
	seen := map[string]bool{}
	for i := range c.Records {
		r := &c.Records[i]
		ids[i] = r.ID.String()
		_, r.Reclaimed = held.endedBy[ids[i]]
		if keyed[r.ID] && !seen[r.Key] {
			seen[r.Key] = true
			keys = append(keys, r.Key)
		}
	}
	if err := s.giveUp(ctx, tx, held, ids); err != nil {
		return store.Claim{Token: token}, err
	}
	idsJSON, _ := json.Marshal(ids)
	keysJSON, _ := json.Marshal(keys)
	if _, err := tx.ExecContext(ctx, s.sql.insertClaim, token.String(), p.Owner, p.Lease.Microseconds(), idsJSON, keysJSON); err != nil {
		return store.Claim{Token: token}, fmt.Errorf("claim: record: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return store.Claim{Token: token}, fmt.Errorf("claim: commit: %w", err)
	}
	return c, nil
}

// claims is what the claims on a table hold: live ones their keys and
// unkeyed events; ended ones their events, by token.
type claims struct {
	liveKeys, liveIDs map[string]bool
	ended             map[string][]string
	endedBy           map[string]string // event ID → token of the ended claim
}

func (s *Store) readClaims(ctx context.Context, tx *sql.Tx) (claims, error) {
	h := claims{liveKeys: map[string]bool{}, liveIDs: map[string]bool{}, ended: map[string][]string{}, endedBy: map[string]string{}}
	rows, err := tx.QueryContext(ctx, s.sql.claims)
	if err != nil {
		return h, fmt.Errorf("claim: read claims: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var token string
		var live bool
		var idsJSON, keysJSON []byte
		if err := rows.Scan(&token, &live, &idsJSON, &keysJSON); err != nil {
			return h, fmt.Errorf("claim: read claims: %w", err)
		}
		var ids, keys []string
		if err := json.Unmarshal(idsJSON, &ids); err != nil {
			return h, fmt.Errorf("claim: claim %s: %w", token, err)
		}
		if !live {
			h.ended[token] = ids
			continue
		}
		if err := json.Unmarshal(keysJSON, &keys); err != nil {
			return h, fmt.Errorf("claim: claim %s: %w", token, err)
		}
		for _, k := range keys {
			h.liveKeys[k] = true
		}
		for _, id := range ids {
			h.liveIDs[id] = true
		}
	}
	if err := rows.Err(); err != nil {
		return h, fmt.Errorf("claim: read claims: %w", err)
	}
	return h, nil
}

// lockEnded locks the ended claims and returns what they hold now.
func (s *Store) lockEnded(ctx context.Context, tx *sql.Tx, ended map[string][]string) (map[string][]string, error) {
	var tokens []any
	for token := range ended {
		tokens = append(tokens, token)
	}
	rows, err := tx.QueryContext(ctx, inList(s.sql.lockClaims, len(tokens)), tokens...)
	if err != nil {
		return nil, fmt.Errorf("claim: lock ended claims: %w", err)
	}
	defer rows.Close()
	now := map[string][]string{}
	for rows.Next() {
		var token string
		var idsJSON []byte
		if err := rows.Scan(&token, &idsJSON); err != nil {
			return nil, fmt.Errorf("claim: lock ended claims: %w", err)
		}
		var ids []string
		if err := json.Unmarshal(idsJSON, &ids); err != nil {
			return nil, fmt.Errorf("claim: claim %s: %w", token, err)
		}
		now[token] = ids
	}
	return now, rows.Err()
}

// window returns the events to take, in seq order: the window's rows
// without those of live claims, at most limit; which of them have a key; and
// the database clock.
func (s *Store) window(ctx context.Context, tx *sql.Tx, limit int, h claims) (recs []store.Record, keyed map[uuid.UUID]bool, now time.Time, err error) {
	for token, ids := range h.ended {
		for _, id := range ids {
			h.endedBy[id] = token
		}
	}
	// The window holds the rows of live claims too, those of this relay's
	// previous batch first: it reads past them, up to claimWindow×limit.
	rows, err := tx.QueryContext(ctx, s.sql.window, min(claimWindow*limit, limit+len(h.liveIDs)))
	if err != nil {
		return nil, nil, now, fmt.Errorf("claim: %w", err)
	}
	defer rows.Close()
	keyed = map[uuid.UUID]bool{}
	for rows.Next() && len(recs) < limit {
		var r store.Record
		var id string
		var headers []byte
		var created, micros int64
		var noKey bool
		if err := rows.Scan(&id, &r.Seq, &r.Topic, &r.Key, &r.EventType, &r.AggregateType, &r.AggregateID,
			&r.Payload, &headers, &r.Attempts, &created, &micros, &noKey); err != nil {
			return nil, nil, now, fmt.Errorf("claim: scan: %w", err)
		}
		if r.ID, err = uuid.Parse(id); err != nil {
			return nil, nil, now, fmt.Errorf("claim: event id %q: %w", id, err)
		}
		if !noKey && h.liveKeys[r.Key] || noKey && h.liveIDs[r.ID.String()] {
			continue
		}
		if err := json.Unmarshal(headers, &r.Headers); err != nil {
			return nil, nil, now, fmt.Errorf("claim: headers of %s: %w", id, err)
		}
		r.CreatedAt, now = time.UnixMicro(created), time.UnixMicro(micros)
		keyed[r.ID] = !noKey
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, now, fmt.Errorf("claim: %w", err)
	}
	return recs, keyed, now, nil
}

// giveUp takes the events of ids out of the ended claims that held them,
// and ends for good the ended claims that hold no pending event any more.
func (s *Store) giveUp(ctx context.Context, tx *sql.Tx, h claims, ids []string) error {
	taken := make(map[string]bool, len(ids))
	for _, id := range ids {
		taken[id] = true
	}
	for token, held := range h.ended {
		var rest []any
		for _, id := range held {
			if !taken[id] {
				rest = append(rest, id)
			}
		}
		left := 0
		if len(rest) > 0 {
			if err := tx.QueryRowContext(ctx, inList(s.sql.pendingOf, len(rest)), rest...).Scan(&left); err != nil {
				return fmt.Errorf("claim: ended claim %s: %w", token, err)
			}
		}
		var err error
		switch {
		case left == 0:
			_, err = tx.ExecContext(ctx, s.sql.deleteClaim, token)
		case len(rest) < len(held):
			var restJSON []byte
			restJSON, err = json.Marshal(rest)
			if err == nil {
				_, err = tx.ExecContext(ctx, s.sql.updateClaim, restJSON, token)
			}
		}
		if err != nil {
			return fmt.Errorf("claim: ended claim %s: %w", token, err)
		}
	}
	return nil
}

// MarkPublished implements [store.Store].
func (s *Store) MarkPublished(ctx context.Context, token uuid.UUID, ids []uuid.UUID) (int, error) {
	n, err := s.settle(ctx, token, ids, func(tx *sql.Tx, mine []any) (int64, error) {
		return execCount(ctx, tx, inList(s.sql.mark, len(mine)), mine...)
	})
	if err != nil {
		return 0, fmt.Errorf("mark published: %w", err)
	}
	return n, nil
}

// DeletePublishedNow implements [store.Deleter].
func (s *Store) DeletePublishedNow(ctx context.Context, token uuid.UUID, ids []uuid.UUID) (int, error) {
	n, err := s.settle(ctx, token, ids, func(tx *sql.Tx, mine []any) (int64, error) {
		return execCount(ctx, tx, inList(s.sql.markDelete, len(mine)), mine...)
	})
	if err != nil {
		return 0, fmt.Errorf("delete published: %w", err)
	}
	return n, nil
}

// Fail implements [store.Store].
func (s *Store) Fail(ctx context.Context, token uuid.UUID, failures []store.Failure) error {
	ids := make([]uuid.UUID, len(failures))
	for i, f := range failures {
		ids[i] = f.ID
	}
	_, err := s.settle(ctx, token, ids, func(tx *sql.Tx, mine []any) (int64, error) {
		held := make(map[any]bool, len(mine))
		for _, id := range mine {
			held[id] = true
		}
		args := make([]any, 0, 4*len(mine))
		for _, f := range failures {
			if held[f.ID.String()] {
				args = append(args, f.ID.String(), store.TruncateError(f.Err), f.Delay.Microseconds(), f.Park)
			}
		}
		return execCount(ctx, tx, failRows(s.sql.fail, len(args)/4), args...)
	})
	if err != nil {
		return fmt.Errorf("record failure: %w", err)
	}
	return nil
}

// Release implements [store.Store]. Without a delay it changes no event.
func (s *Store) Release(ctx context.Context, token uuid.UUID, ids []uuid.UUID, delay time.Duration) error {
	var change func(*sql.Tx, []any) (int64, error)
	if delay > 0 {
		change = func(tx *sql.Tx, mine []any) (int64, error) {
			return execCount(ctx, tx, inList(s.sql.release, len(mine)), append([]any{delay.Microseconds()}, mine...)...)
		}
	}
	if _, err := s.settle(ctx, token, ids, change); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	return nil
}

// settle settles events of a claim in one transaction: it locks the claim's
// row, lets change act on the events of ids that the claim still holds
// (those of an ended claim that another claim took over are not the
// caller's any more), and makes the row forget ids, or deletes it once it
// holds no event. It returns what change returned.
func (s *Store) settle(ctx context.Context, token uuid.UUID, ids []uuid.UUID, change func(tx *sql.Tx, mine []any) (int64, error)) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var heldJSON []byte
		err := tx.QueryRowContext(ctx, s.sql.lockClaim, token.String()).Scan(&heldJSON)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		var held []string
		if err := json.Unmarshal(heldJSON, &held); err != nil {
			return fmt.Errorf("claim %s: %w", token, err)
		}
		settled := make(map[string]bool, len(ids))
		for _, id := range ids {
			settled[id.String()] = true
		}
		var mine []any
		rest := make([]string, 0, len(held))
		for _, id := range held {
			if settled[id] {
				mine = append(mine, id)
			} else {
				rest = append(rest, id)
			}
		}
		if len(mine) > 0 && change != nil {
			if n, err = change(tx, mine); err != nil {
				return err
			}
		}
		if len(rest) == 0 {
			_, err = tx.ExecContext(ctx, s.sql.deleteClaim, token.String())
			return err
		}
		restJSON, err := json.Marshal(rest)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, s.sql.updateClaim, restJSON, token.String())
		return err
	})
	return int(n), err
}

// execCount runs a statement in tx and returns the number of rows it
// changed.
func execCount(ctx context.Context, tx *sql.Tx, query string, args ...any) (int64, error) {
	res, err := tx.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
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

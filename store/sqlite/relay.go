package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox/internal/sqlwrite"
	"github.com/outboxkit/outbox/store"
)

// claimWindow bounds the claim's walk to this many times its limit: rows
// held by live claims are dropped after the walk, so that a backlog held by
// other claims (which end within their lease) costs a claim O(limit).
const claimWindow = 2

// claimRow is a row of the claims table: the events a claim holds and their
// keys.
type claimRow struct {
	token      string
	leaseUntil int64
	ids, keys  []string
}

// Claim implements [store.Store]. It runs in one transaction that holds the
// database's write lock, so claims are serialized. It reads the live claims,
// walks a window of pending rows in seq order that no backed-off or parked
// row of their key holds back, drops those of keys (or, without a key, IDs)
// that a live claim holds, and records the claim in one row. Claims whose
// lease ended give up the events taken here (which are Reclaimed) and go
// once they hold no pending event.
func (s *Store) Claim(ctx context.Context, p store.ClaimParams) (store.Claim, error) {
	c := store.Claim{Token: uuid.New()}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var nowUS int64
		if err := tx.QueryRowContext(ctx, "SELECT "+now).Scan(&nowUS); err != nil {
			return err
		}
		c.Now = time.UnixMicro(nowUS)
		claims, err := readClaims(ctx, tx, s.claims, "")
		if err != nil {
			return err
		}
		liveIDs, liveKeys := map[string]bool{}, map[string]bool{}
		var ended []claimRow
		endedIDs := map[string]bool{}
		for _, cl := range claims {
			if cl.leaseUntil > nowUS {
				for _, id := range cl.ids {
					liveIDs[id] = true
				}
				for _, k := range cl.keys {
					liveKeys[k] = true
				}
				continue
			}
			ended = append(ended, cl)
			for _, id := range cl.ids {
				endedIDs[id] = true
			}
		}
		rows, err := tx.QueryContext(ctx, `SELECT `+recordColumns+` FROM `+s.table+` o
WHERE o.published_at IS NULL AND o.parked_at IS NULL
  AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= ?1)
  AND (o.event_key IS NULL OR NOT EXISTS (
	SELECT 1 FROM `+s.table+` b
	WHERE b.event_key = o.event_key AND b.seq < o.seq
	  AND b.published_at IS NULL AND (b.next_attempt_at IS NOT NULL OR b.parked_at IS NOT NULL)
	  AND (b.next_attempt_at > ?1 OR b.parked_at IS NOT NULL)))
ORDER BY o.seq LIMIT ?2`, nowUS, claimWindow*p.Limit)
		if err != nil {
			return err
		}
		window, err := scanRecords(rows)
		if err != nil {
			return err
		}
		var ids, keys []string
		for _, r := range window {
			if len(c.Records) == p.Limit {
				break
			}
			id := r.ID.String()
			if r.Key == "" && liveIDs[id] || r.Key != "" && liveKeys[r.Key] {
				continue
			}
			r.Reclaimed = endedIDs[id]
			c.Records = append(c.Records, r)
			ids = append(ids, id)
			if r.Key != "" && !slices.Contains(keys, r.Key) {
				keys = append(keys, r.Key)
			}
		}
		if err := s.giveUp(ctx, tx, ended, ids); err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		idsJSON, _ := json.Marshal(ids)
		keysJSON, _ := json.Marshal(append([]string{}, keys...))
		_, err = tx.ExecContext(ctx, `INSERT INTO `+s.claims+` (token, owner, lease_until, event_ids, event_keys) VALUES (?, ?, ?, ?, ?)`,
			c.Token.String(), p.Owner, nowUS+p.Lease.Microseconds(), string(idsJSON), string(keysJSON))
		return err
	})
	if err != nil {
		return store.Claim{Token: c.Token}, fmt.Errorf("claim: %w", err)
	}
	return c, nil
}

// giveUp takes the events taken by a new claim out of the claims whose
// lease ended, and deletes those that hold no pending event any more.
func (s *Store) giveUp(ctx context.Context, tx *sql.Tx, ended []claimRow, taken []string) error {
	for _, cl := range ended {
		rest := slices.DeleteFunc(slices.Clone(cl.ids), func(id string) bool { return slices.Contains(taken, id) })
		pending := 0
		if len(rest) > 0 {
			args := make([]any, len(rest))
			for i, id := range rest {
				args[i] = id
			}
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM `+s.table+` WHERE published_at IS NULL AND parked_at IS NULL AND id IN (`+
				sqlwrite.Placeholders("?", len(rest))+`)`, args...).Scan(&pending); err != nil {
				return err
			}
		}
		var err error
		switch {
		case pending == 0:
			_, err = tx.ExecContext(ctx, `DELETE FROM `+s.claims+` WHERE token = ?`, cl.token)
		case len(rest) < len(cl.ids):
			ids, _ := json.Marshal(rest)
			_, err = tx.ExecContext(ctx, `UPDATE `+s.claims+` SET event_ids = ? WHERE token = ?`, string(ids), cl.token)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// readClaims returns the rows of the claims table, or the one of token.
func readClaims(ctx context.Context, tx *sql.Tx, table, token string) ([]claimRow, error) {
	q := `SELECT token, lease_until, event_ids, event_keys FROM ` + table
	var args []any
	if token != "" {
		q += ` WHERE token = ?`
		args = append(args, token)
	}
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []claimRow
	for rows.Next() {
		var cl claimRow
		var ids, keys string
		if err := rows.Scan(&cl.token, &cl.leaseUntil, &ids, &keys); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(ids), &cl.ids); err != nil {
			return nil, fmt.Errorf("claim %s: %w", cl.token, err)
		}
		if err := json.Unmarshal([]byte(keys), &cl.keys); err != nil {
			return nil, fmt.Errorf("claim %s: %w", cl.token, err)
		}
		out = append(out, cl)
	}
	return out, rows.Err()
}

// settle runs change on the events of ids that the claim of token still
// holds (a claim whose lease ended may have lost some to a later claim),
// and makes the claim forget ids, deleting it once it holds none. It returns
// how many rows change changed.
func (s *Store) settle(ctx context.Context, token uuid.UUID, ids []uuid.UUID, change func(tx *sql.Tx, mine []any) (int64, error)) (int, error) {
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		claims, err := readClaims(ctx, tx, s.claims, token.String())
		if err != nil || len(claims) == 0 {
			return err
		}
		cl := claims[0]
		given := make(map[string]bool, len(ids))
		for _, id := range ids {
			given[id.String()] = true
		}
		var mine []any
		var rest []string
		for _, id := range cl.ids {
			if given[id] {
				mine = append(mine, id)
			} else {
				rest = append(rest, id)
			}
		}
		if len(mine) > 0 {
			if n, err = change(tx, mine); err != nil {
				return err
			}
		}
		if len(rest) == 0 {
			_, err = tx.ExecContext(ctx, `DELETE FROM `+s.claims+` WHERE token = ?`, cl.token)
		} else if len(rest) < len(cl.ids) {
			b, _ := json.Marshal(rest)
			_, err = tx.ExecContext(ctx, `UPDATE `+s.claims+` SET event_ids = ? WHERE token = ?`, string(b), cl.token)
		}
		return err
	})
	return int(n), err
}

// inIDs returns " id IN (?, ...)" for n IDs.
func inIDs(n int) string { return " id IN (" + sqlwrite.Placeholders("?", n) + ")" }

// MarkPublished implements [store.Store].
func (s *Store) MarkPublished(ctx context.Context, token uuid.UUID, ids []uuid.UUID) (int, error) {
	n, err := s.settle(ctx, token, ids, func(tx *sql.Tx, mine []any) (int64, error) {
		res, err := tx.ExecContext(ctx, `UPDATE `+s.table+` SET published_at = `+now+` WHERE published_at IS NULL AND`+inIDs(len(mine)), mine...)
		if err != nil {
			return 0, err
		}
		return res.RowsAffected()
	})
	if err != nil {
		return 0, fmt.Errorf("mark published: %w", err)
	}
	return n, nil
}

// DeletePublishedNow implements [store.Deleter]: publish-and-delete.
func (s *Store) DeletePublishedNow(ctx context.Context, token uuid.UUID, ids []uuid.UUID) (int, error) {
	n, err := s.settle(ctx, token, ids, func(tx *sql.Tx, mine []any) (int64, error) {
		res, err := tx.ExecContext(ctx, `DELETE FROM `+s.table+` WHERE published_at IS NULL AND`+inIDs(len(mine)), mine...)
		if err != nil {
			return 0, err
		}
		return res.RowsAffected()
	})
	if err != nil {
		return 0, fmt.Errorf("delete published: %w", err)
	}
	return n, nil
}

// Fail implements [store.Store].
func (s *Store) Fail(ctx context.Context, token uuid.UUID, failures []store.Failure) error {
	ids := make([]uuid.UUID, len(failures))
	byID := make(map[string]store.Failure, len(failures))
	for i, f := range failures {
		ids[i] = f.ID
		byID[f.ID.String()] = f
	}
	_, err := s.settle(ctx, token, ids, func(tx *sql.Tx, mine []any) (int64, error) {
		var n int64
		for _, id := range mine {
			f := byID[id.(string)]
			set, arg := `next_attempt_at = `+now+` + ?`, any(f.Delay.Microseconds())
			if f.Park {
				set, arg = `parked_at = `+now, nil
			}
			args := []any{store.TruncateError(f.Err)}
			if arg != nil {
				args = append(args, arg)
			}
			res, err := tx.ExecContext(ctx, `UPDATE `+s.table+` SET retry_count = retry_count + 1, last_error = ?, `+set+`
WHERE id = ? AND published_at IS NULL`, append(args, id)...)
			if err != nil {
				return 0, err
			}
			m, _ := res.RowsAffected()
			n += m
		}
		return n, nil
	})
	if err != nil {
		return fmt.Errorf("record failure: %w", err)
	}
	return nil
}

// Release implements [store.Store]. Without a delay it changes no event:
// the claim forgets them, and its keys hold them until the claim goes.
func (s *Store) Release(ctx context.Context, token uuid.UUID, ids []uuid.UUID, delay time.Duration) error {
	_, err := s.settle(ctx, token, ids, func(tx *sql.Tx, mine []any) (int64, error) {
		if delay <= 0 {
			return 0, nil
		}
		res, err := tx.ExecContext(ctx, `UPDATE `+s.table+` SET next_attempt_at = `+now+` + ? WHERE published_at IS NULL AND`+inIDs(len(mine)),
			append([]any{delay.Microseconds()}, mine...)...)
		if err != nil {
			return 0, err
		}
		return res.RowsAffected()
	})
	if err != nil {
		return fmt.Errorf("release: %w", err)
	}
	return nil
}

// DeletePublished implements [store.Store].
func (s *Store) DeletePublished(ctx context.Context, olderThan time.Duration, limit int) (int, error) {
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM `+s.table+` WHERE seq IN (
	SELECT seq FROM `+s.table+` WHERE published_at IS NOT NULL AND published_at < `+now+` - ?
	ORDER BY published_at LIMIT ?)`, olderThan.Microseconds(), limit)
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

// Stats implements [store.Store].
func (s *Store) Stats(ctx context.Context) (store.Stats, error) {
	var st store.Stats
	var age int64
	err := s.db.QueryRowContext(ctx, strings.NewReplacer("{t}", s.table, "{now}", now).Replace(`SELECT
	(SELECT count(*) FROM {t} WHERE published_at IS NULL AND parked_at IS NULL),
	COALESCE((SELECT {now} - created_at FROM {t} WHERE published_at IS NULL AND parked_at IS NULL ORDER BY seq LIMIT 1), 0),
	(SELECT count(*) FROM {t} WHERE published_at IS NULL AND parked_at IS NOT NULL)`)).Scan(&st.Pending, &age, &st.Parked)
	if err != nil {
		return st, fmt.Errorf("stats: %w", err)
	}
	st.OldestPendingAge = time.Duration(max(age, 0)) * time.Microsecond
	return st, nil
}

// recordColumns are the columns of a store.Record, for scanRecords.
const recordColumns = `id, seq, COALESCE(topic, json_extract(event_data, '$.topic'), ''), COALESCE(event_key, ''),
	event_type, aggregate_type, aggregate_id, event_data, headers, retry_count, created_at`

// scanRecords reads rows of recordColumns and closes them.
func scanRecords(rows *sql.Rows) ([]store.Record, error) {
	defer rows.Close()
	var out []store.Record
	for rows.Next() {
		var r store.Record
		var id string
		var headers []byte
		var created int64
		if err := rows.Scan(&id, &r.Seq, &r.Topic, &r.Key, &r.EventType, &r.AggregateType, &r.AggregateID,
			&r.Payload, &headers, &r.Attempts, &created); err != nil {
			return nil, err
		}
		var err error
		if r.ID, err = uuid.Parse(id); err != nil {
			return nil, fmt.Errorf("event id %q: %w", id, err)
		}
		if err := json.Unmarshal(headers, &r.Headers); err != nil {
			return nil, fmt.Errorf("headers of %s: %w", id, err)
		}
		r.CreatedAt = time.UnixMicro(created)
		out = append(out, r)
	}
	return out, rows.Err()
}

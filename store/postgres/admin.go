package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/outboxkit/outbox/store"
)

var _ store.Admin = (*Store)(nil)

// rowColumns are the columns of a store.Row, {payload} filled by the caller.
const rowColumns = `id, seq, COALESCE(topic, event_data->>'topic', ''), COALESCE(event_key, ''), event_type,
	aggregate_type, aggregate_id, {payload}, headers, retry_count, created_at, published_at, parked_at,
	COALESCE(last_error, '')`

func (s *Store) selectRows(omitPayload bool) string {
	payload := "event_data"
	if omitPayload {
		payload = "NULL::json"
	}
	return "SELECT " + strings.Replace(rowColumns, "{payload}", payload, 1) + " FROM " + s.table
}

func scanRows(rows pgx.Rows) ([]store.Row, error) {
	defer rows.Close()
	var out []store.Row
	for rows.Next() {
		var r store.Row
		var id [16]byte
		var published, parked *time.Time
		if err := rows.Scan(&id, &r.Seq, &r.Topic, &r.Key, &r.EventType, &r.AggregateType, &r.AggregateID,
			&r.Payload, &r.Headers, &r.Attempts, &r.CreatedAt, &published, &parked, &r.LastError); err != nil {
			return nil, err
		}
		r.ID = id
		if published != nil {
			r.PublishedAt = *published
		}
		if parked != nil {
			r.ParkedAt = *parked
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Now implements [store.Admin].
func (s *Store) Now(ctx context.Context) (time.Time, error) {
	var now time.Time
	if err := s.pool.QueryRow(ctx, "SELECT now()").Scan(&now); err != nil {
		return now, fmt.Errorf("now: %w", err)
	}
	return now, nil
}

// TopicStats implements [store.Admin]. Each branch of the union reads one
// partial index: pending, held (parked rows are held) and published.
func (s *Store) TopicStats(ctx context.Context) ([]store.TopicStats, error) {
	q := strings.ReplaceAll(`SELECT topic, sum(pending)::bigint,
	COALESCE(extract(epoch FROM now() - min(pending_created)), 0)::float8,
	sum(parked)::bigint, sum(p1)::bigint, sum(p5)::bigint, sum(p15)::bigint
FROM (
	SELECT COALESCE(topic, event_data->>'topic', '') AS topic, 1 AS pending, created_at AS pending_created,
		0 AS parked, 0 AS p1, 0 AS p5, 0 AS p15
	FROM {t} WHERE published_at IS NULL AND parked_at IS NULL
	UNION ALL
	SELECT COALESCE(topic, event_data->>'topic', ''), 0, NULL, 1, 0, 0, 0
	FROM {t} WHERE published_at IS NULL AND parked_at IS NOT NULL
	UNION ALL
	SELECT COALESCE(topic, event_data->>'topic', ''), 0, NULL, 0,
		(published_at > now() - interval '1 minute')::int, (published_at > now() - interval '5 minutes')::int, 1
	FROM {t} WHERE published_at > now() - interval '15 minutes' AND parked_at IS NULL
) x
GROUP BY topic ORDER BY topic`, "{t}", s.table)
	rows, err := s.pool.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("topic stats: %w", err)
	}
	defer rows.Close()
	var out []store.TopicStats
	for rows.Next() {
		var ts store.TopicStats
		var age float64
		if err := rows.Scan(&ts.Topic, &ts.Pending, &age, &ts.Parked, &ts.Published1m, &ts.Published5m, &ts.Published15m); err != nil {
			return nil, fmt.Errorf("topic stats: %w", err)
		}
		ts.OldestPendingAge = time.Duration(age * float64(time.Second))
		out = append(out, ts)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("topic stats: %w", err)
	}
	return out, nil
}

// ListParked implements [store.Admin].
func (s *Store) ListParked(ctx context.Context, afterSeq int64, limit int) ([]store.Row, error) {
	rows, err := s.pool.Query(ctx, s.selectRows(false)+`
WHERE published_at IS NULL AND parked_at IS NOT NULL AND seq > $1 ORDER BY seq LIMIT $2`, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("list parked: %w", err)
	}
	out, err := scanRows(rows)
	if err != nil {
		return nil, fmt.Errorf("list parked: %w", err)
	}
	return out, nil
}

// GetEvent implements [store.Admin].
func (s *Store) GetEvent(ctx context.Context, id uuid.UUID) (store.Row, error) {
	rows, err := s.pool.Query(ctx, s.selectRows(false)+" WHERE id = $1", [16]byte(id))
	if err != nil {
		return store.Row{}, fmt.Errorf("get event: %w", err)
	}
	out, err := scanRows(rows)
	switch {
	case err != nil:
		return store.Row{}, fmt.Errorf("get event: %w", err)
	case len(out) == 0:
		return store.Row{}, fmt.Errorf("get event %s: %w", id, store.ErrNotFound)
	}
	return out[0], nil
}

// RetryParked implements [store.Admin]. The audit rows and the update are
// one statement, so they commit together.
func (s *Store) RetryParked(ctx context.Context, p store.RetryParams) (int, error) {
	var n int
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var id *[16]byte
		if p.ID != uuid.Nil {
			b := [16]byte(p.ID)
			id = &b
		}
		var key *string
		if p.Key != "" {
			key = &p.Key
		}
		tag, err := tx.Exec(ctx, strings.ReplaceAll(`WITH r AS (
	UPDATE {t} SET parked_at = NULL, retry_count = 0, next_attempt_at = NULL
	WHERE id IN (
		SELECT id FROM {t}
		WHERE published_at IS NULL AND parked_at IS NOT NULL
		  AND ($1::uuid IS NULL OR id = $1) AND ($2::text IS NULL OR event_key = $2)
		ORDER BY seq LIMIT $3 FOR UPDATE)
	RETURNING id)
INSERT INTO outbox_audit (table_name, event_id, action, actor, reason)
SELECT $4, id, 'retry', $5, $6 FROM r`, "{t}", s.table), id, key, p.Limit, s.table, p.Actor, p.Reason)
		n = int(tag.RowsAffected())
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("retry parked: %w", err)
	}
	return n, nil
}

// SkipParked implements [store.Admin]. last_error keeps the skip too, so
// that the row tells its story without the audit table.
func (s *Store) SkipParked(ctx context.Context, id uuid.UUID, a store.Action) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var parked bool
		var lastErr string
		var now time.Time
		err := tx.QueryRow(ctx, `SELECT published_at IS NULL AND parked_at IS NOT NULL, COALESCE(last_error, ''), now()
FROM `+s.table+` WHERE id = $1 FOR UPDATE`, [16]byte(id)).Scan(&parked, &lastErr, &now)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return store.ErrNotFound
		case err != nil:
			return err
		case !parked:
			return store.ErrNotParked
		}
		if _, err := tx.Exec(ctx, `UPDATE `+s.table+` SET published_at = now(), last_error = $2 WHERE id = $1`,
			[16]byte(id), store.TruncateError(skipNote(a, now, lastErr))); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO outbox_audit (table_name, event_id, action, actor, reason)
VALUES ($1, $2, 'skip', $3, $4)`, s.table, [16]byte(id), a.Actor, a.Reason)
		return err
	})
	if err != nil {
		return fmt.Errorf("skip %s: %w", id, err)
	}
	return nil
}

// skipNote is the last_error of a skipped event.
func skipNote(a store.Action, at time.Time, lastErr string) string {
	return fmt.Sprintf("skipped by %s at %s: %s; last error: %s", a.Actor, at.UTC().Format(time.RFC3339), a.Reason, lastErr)
}

// ListPublished implements [store.Admin]. The conditions are built per call
// so that the planner sees only those that filter, and can use the
// aggregate, event type and published indexes.
func (s *Store) ListPublished(ctx context.Context, f store.PublishedFilter) ([]store.Row, error) {
	where := []string{"published_at IS NOT NULL", "parked_at IS NULL"}
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "$?", "$"+strconv.Itoa(len(args))))
	}
	if f.Topic != "" {
		add("COALESCE(topic, event_data->>'topic', '') = $?", f.Topic)
	}
	if f.AggregateType != "" {
		add("aggregate_type = $?", f.AggregateType)
	}
	if f.AggregateID != "" {
		add("aggregate_id = $?", f.AggregateID)
	}
	if f.EventType != "" {
		add("event_type = $?", f.EventType)
	}
	if !f.Since.IsZero() {
		add("published_at >= $?", f.Since)
	}
	if !f.Until.IsZero() {
		add("published_at < $?", f.Until)
	}
	if f.After != nil {
		// The plain bound lets the planner use ix_<table>_published, which
		// the row comparison alone does not.
		args = append(args, f.After.PublishedAt, f.After.Seq)
		n := len(args)
		where = append(where, fmt.Sprintf("published_at >= $%d AND (published_at, seq) > ($%[1]d, $%d)", n-1, n))
	}
	args = append(args, f.Limit)
	q := s.selectRows(f.OmitPayload) + " WHERE " + strings.Join(where, " AND ") +
		" ORDER BY published_at, seq LIMIT $" + strconv.Itoa(len(args))
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list published: %w", err)
	}
	out, err := scanRows(rows)
	if err != nil {
		return nil, fmt.Errorf("list published: %w", err)
	}
	return out, nil
}

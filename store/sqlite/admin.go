package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox/store"
)

var _ store.Admin = (*Store)(nil)

// rowColumns are the columns of a store.Row, {payload} filled by the caller.
const rowColumns = `id, seq, COALESCE(topic, json_extract(event_data, '$.topic'), ''), COALESCE(event_key, ''),
	event_type, aggregate_type, aggregate_id, {payload}, headers, retry_count, created_at, published_at, parked_at,
	COALESCE(last_error, '')`

// topicExpr is the topic as the relay reads it.
const topicExpr = `COALESCE(topic, json_extract(event_data, '$.topic'), '')`

func (s *Store) selectRows(omitPayload bool) string {
	payload := "event_data"
	if omitPayload {
		payload = "NULL"
	}
	return "SELECT " + strings.Replace(rowColumns, "{payload}", payload, 1) + " FROM " + s.table
}

func (s *Store) queryRows(ctx context.Context, query string, args ...any) ([]store.Row, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Row
	for rows.Next() {
		var r store.Row
		var id string
		var payload sql.NullString
		var headers []byte
		var created int64
		var published, parked sql.NullInt64
		if err := rows.Scan(&id, &r.Seq, &r.Topic, &r.Key, &r.EventType, &r.AggregateType, &r.AggregateID,
			&payload, &headers, &r.Attempts, &created, &published, &parked, &r.LastError); err != nil {
			return nil, err
		}
		if r.ID, err = uuid.Parse(id); err != nil {
			return nil, fmt.Errorf("event id %q: %w", id, err)
		}
		if payload.Valid {
			r.Payload = []byte(payload.String)
		}
		if err := json.Unmarshal(headers, &r.Headers); err != nil {
			return nil, fmt.Errorf("headers of %s: %w", id, err)
		}
		r.CreatedAt = time.UnixMicro(created)
		if published.Valid {
			r.PublishedAt = time.UnixMicro(published.Int64)
		}
		if parked.Valid {
			r.ParkedAt = time.UnixMicro(parked.Int64)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Now implements [store.Admin].
func (s *Store) Now(ctx context.Context) (time.Time, error) {
	var us int64
	if err := s.db.QueryRowContext(ctx, "SELECT "+now).Scan(&us); err != nil {
		return time.Time{}, fmt.Errorf("now: %w", err)
	}
	return time.UnixMicro(us), nil
}

// TopicStats implements [store.Admin].
func (s *Store) TopicStats(ctx context.Context) ([]store.TopicStats, error) {
	q := strings.NewReplacer("{t}", s.table, "{topic}", topicExpr, "{now}", now).Replace(`SELECT topic, SUM(pending),
	COALESCE({now} - MIN(pending_created), 0), SUM(parked), SUM(p1), SUM(p5), SUM(p15)
FROM (
	SELECT {topic} AS topic, parked_at IS NULL AS pending,
		CASE WHEN parked_at IS NULL THEN created_at END AS pending_created,
		parked_at IS NOT NULL AS parked, 0 AS p1, 0 AS p5, 0 AS p15
	FROM {t} WHERE published_at IS NULL
	UNION ALL
	SELECT {topic}, 0, NULL, 0, published_at > {now} - 60000000, published_at > {now} - 300000000, 1
	FROM {t} WHERE published_at > {now} - 900000000 AND parked_at IS NULL
)
GROUP BY topic ORDER BY topic`)
	rows, err := s.db.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("topic stats: %w", err)
	}
	defer rows.Close()
	var out []store.TopicStats
	for rows.Next() {
		var ts store.TopicStats
		var age int64
		if err := rows.Scan(&ts.Topic, &ts.Pending, &age, &ts.Parked, &ts.Published1m, &ts.Published5m, &ts.Published15m); err != nil {
			return nil, fmt.Errorf("topic stats: %w", err)
		}
		ts.OldestPendingAge = time.Duration(max(age, 0)) * time.Microsecond
		out = append(out, ts)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("topic stats: %w", err)
	}
	return out, nil
}

// ListParked implements [store.Admin].
func (s *Store) ListParked(ctx context.Context, afterSeq int64, limit int) ([]store.Row, error) {
	out, err := s.queryRows(ctx, s.selectRows(false)+`
WHERE published_at IS NULL AND parked_at IS NOT NULL AND seq > ? ORDER BY seq LIMIT ?`, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("list parked: %w", err)
	}
	return out, nil
}

// GetEvent implements [store.Admin].
func (s *Store) GetEvent(ctx context.Context, id uuid.UUID) (store.Row, error) {
	out, err := s.queryRows(ctx, s.selectRows(false)+" WHERE id = ?", id.String())
	switch {
	case err != nil:
		return store.Row{}, fmt.Errorf("get event: %w", err)
	case len(out) == 0:
		return store.Row{}, fmt.Errorf("get event %s: %w", id, store.ErrNotFound)
	}
	return out[0], nil
}

// RetryParked implements [store.Admin].
func (s *Store) RetryParked(ctx context.Context, p store.RetryParams) (int, error) {
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var id, key any
		if p.ID != uuid.Nil {
			id = p.ID.String()
		}
		if p.Key != "" {
			key = p.Key
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO outbox_audit (table_name, event_id, action, actor, reason)
SELECT ?, id, 'retry', ?, ? FROM `+s.table+`
WHERE published_at IS NULL AND parked_at IS NOT NULL AND (?4 IS NULL OR id = ?4) AND (?5 IS NULL OR event_key = ?5)
ORDER BY seq LIMIT ?6`, s.table, p.Actor, p.Reason, id, key, p.Limit); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE `+s.table+` SET parked_at = NULL, retry_count = 0, next_attempt_at = NULL
WHERE seq IN (
	SELECT seq FROM `+s.table+`
	WHERE published_at IS NULL AND parked_at IS NOT NULL AND (?1 IS NULL OR id = ?1) AND (?2 IS NULL OR event_key = ?2)
	ORDER BY seq LIMIT ?3)`, id, key, p.Limit)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("retry parked: %w", err)
	}
	return int(n), nil
}

// SkipParked implements [store.Admin]. last_error keeps the skip too, so
// that the row tells its story without the audit table.
func (s *Store) SkipParked(ctx context.Context, id uuid.UUID, a store.Action) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var parked bool
		var lastErr string
		var nowUS int64
		err := tx.QueryRowContext(ctx, `SELECT published_at IS NULL AND parked_at IS NOT NULL, COALESCE(last_error, ''), `+now+`
FROM `+s.table+` WHERE id = ?`, id.String()).Scan(&parked, &lastErr, &nowUS)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return store.ErrNotFound
		case err != nil:
			return err
		case !parked:
			return store.ErrNotParked
		}
		note := fmt.Sprintf("skipped by %s at %s: %s; last error: %s", a.Actor,
			time.UnixMicro(nowUS).UTC().Format(time.RFC3339), a.Reason, lastErr)
		if _, err := tx.ExecContext(ctx, `UPDATE `+s.table+` SET published_at = ?, last_error = ? WHERE id = ?`,
			nowUS, store.TruncateError(note), id.String()); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO outbox_audit (table_name, event_id, action, actor, reason)
VALUES (?, ?, 'skip', ?, ?)`, s.table, id.String(), a.Actor, a.Reason)
		return err
	})
	if err != nil {
		return fmt.Errorf("skip %s: %w", id, err)
	}
	return nil
}

// ListPublished implements [store.Admin].
func (s *Store) ListPublished(ctx context.Context, f store.PublishedFilter) ([]store.Row, error) {
	where := []string{"published_at IS NOT NULL", "parked_at IS NULL"}
	var args []any
	add := func(cond string, vs ...any) {
		where = append(where, cond)
		args = append(args, vs...)
	}
	if f.Topic != "" {
		add(topicExpr+" = ?", f.Topic)
	}
	if f.AggregateType != "" {
		add("aggregate_type = ?", f.AggregateType)
	}
	if f.AggregateID != "" {
		add("aggregate_id = ?", f.AggregateID)
	}
	if f.EventType != "" {
		add("event_type = ?", f.EventType)
	}
	if !f.Since.IsZero() {
		add("published_at >= ?", f.Since.UnixMicro())
	}
	if !f.Until.IsZero() {
		add("published_at < ?", f.Until.UnixMicro())
	}
	if f.After != nil {
		at := f.After.PublishedAt.UnixMicro()
		add("(published_at > ? OR (published_at = ? AND seq > ?))", at, at, f.After.Seq)
	}
	q := s.selectRows(f.OmitPayload) + " WHERE " + strings.Join(where, " AND ") + " ORDER BY published_at, seq LIMIT ?"
	out, err := s.queryRows(ctx, q, append(args, f.Limit)...)
	if err != nil {
		return nil, fmt.Errorf("list published: %w", err)
	}
	return out, nil
}

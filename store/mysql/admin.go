package mysql

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox/internal/sqlwrite"
	"github.com/outboxkit/outbox/store"
)

var _ store.Admin = (*Store)(nil)

// rowColumns are the columns of a store.Row, {payload} filled by the caller.
var rowColumns = `id, seq, COALESCE(topic, JSON_UNQUOTE(JSON_EXTRACT(event_data, '$.topic')), ''),
	COALESCE(event_key, ''), event_type, aggregate_type, aggregate_id, {payload}, headers, retry_count, ` +
	micros("created_at") + `, ` + micros("published_at") + `, ` + micros("parked_at") + `, COALESCE(last_error, '')`

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
		var headers []byte
		var created int64
		var published, parked sql.NullInt64
		if err := rows.Scan(&id, &r.Seq, &r.Topic, &r.Key, &r.EventType, &r.AggregateType, &r.AggregateID,
			&r.Payload, &headers, &r.Attempts, &created, &published, &parked, &r.LastError); err != nil {
			return nil, err
		}
		if r.ID, err = uuid.Parse(id); err != nil {
			return nil, fmt.Errorf("event id %q: %w", id, err)
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

// timeArg passes t as epoch seconds with microseconds, for
// FROM_UNIXTIME(CAST(? AS DECIMAL(20,6))): like the store's reads, it does
// not depend on the DSN's loc or on how the driver formats times.
func timeArg(t time.Time) string {
	us := t.UnixMicro()
	return fmt.Sprintf("%d.%06d", us/1_000_000, us%1_000_000)
}

const fromTimeArg = "FROM_UNIXTIME(CAST(? AS DECIMAL(20,6)))"

// Now implements [store.Admin].
func (s *Store) Now(ctx context.Context) (time.Time, error) {
	var us int64
	if err := s.db.QueryRowContext(ctx, "SELECT "+micros("NOW(6)")).Scan(&us); err != nil {
		return time.Time{}, fmt.Errorf("now: %w", err)
	}
	return time.UnixMicro(us), nil
}

// TopicStats implements [store.Admin]. The branches of the union read
// ranges of the indexes that start with published_at.
func (s *Store) TopicStats(ctx context.Context) ([]store.TopicStats, error) {
	topic := "COALESCE(topic, JSON_UNQUOTE(JSON_EXTRACT(event_data, '$.topic')), '')"
	q := strings.NewReplacer("{t}", s.table, "{topic}", topic).Replace(`SELECT topic, SUM(pending),
	COALESCE(TIMESTAMPDIFF(MICROSECOND, MIN(pending_created), NOW(6)), 0),
	SUM(parked), SUM(p1), SUM(p5), SUM(p15)
FROM (
	SELECT {topic} AS topic, parked_at IS NULL AS pending,
		CASE WHEN parked_at IS NULL THEN created_at END AS pending_created,
		parked_at IS NOT NULL AS parked, 0 AS p1, 0 AS p5, 0 AS p15
	FROM {t} WHERE published_at IS NULL
	UNION ALL
	SELECT {topic}, 0, NULL, 0, published_at > NOW(6) - INTERVAL 1 MINUTE,
		published_at > NOW(6) - INTERVAL 5 MINUTE, 1
	FROM {t} WHERE published_at > NOW(6) - INTERVAL 15 MINUTE AND parked_at IS NULL
) x
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
		ts.OldestPendingAge = time.Duration(age) * time.Microsecond
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
	var n int
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		q := `SELECT id FROM ` + s.table + ` WHERE published_at IS NULL AND parked_at IS NOT NULL`
		var args []any
		if p.ID != uuid.Nil {
			q += " AND id = ?"
			args = append(args, p.ID.String())
		}
		if p.Key != "" {
			q += " AND event_key = ?"
			args = append(args, p.Key)
		}
		rows, err := tx.QueryContext(ctx, q+" ORDER BY seq LIMIT ? FOR UPDATE", append(args, p.Limit)...)
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
		if _, err := tx.ExecContext(ctx, inList(`UPDATE `+s.table+` SET parked_at = NULL, retry_count = 0,
	next_attempt_at = NULL WHERE id IN ({ids})`, len(ids)), ids...); err != nil {
			return err
		}
		var audit []any
		for _, id := range ids {
			audit = append(audit, s.table, id, "retry", p.Actor, p.Reason)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO outbox_audit (table_name, event_id, action, actor, reason) VALUES `+
			sqlwrite.Placeholders("(?, ?, ?, ?, ?)", len(ids)), audit...); err != nil {
			return err
		}
		n = len(ids)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("retry parked: %w", err)
	}
	return n, nil
}

// SkipParked implements [store.Admin]. last_error keeps the skip too, so
// that the row tells its story without the audit table.
func (s *Store) SkipParked(ctx context.Context, id uuid.UUID, a store.Action) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var parked bool
		var lastErr string
		var now int64
		err := tx.QueryRowContext(ctx, `SELECT published_at IS NULL AND parked_at IS NOT NULL, COALESCE(last_error, ''), `+
			micros("NOW(6)")+` FROM `+s.table+` WHERE id = ? FOR UPDATE`, id.String()).Scan(&parked, &lastErr, &now)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return store.ErrNotFound
		case err != nil:
			return err
		case !parked:
			return store.ErrNotParked
		}
		note := fmt.Sprintf("skipped by %s at %s: %s; last error: %s", a.Actor,
			time.UnixMicro(now).UTC().Format(time.RFC3339), a.Reason, lastErr)
		if _, err := tx.ExecContext(ctx, `UPDATE `+s.table+` SET published_at = NOW(6), last_error = ? WHERE id = ?`,
			store.TruncateError(note), id.String()); err != nil {
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

// ListPublished implements [store.Admin]. The conditions are built per call
// so that the optimizer sees only those that filter.
func (s *Store) ListPublished(ctx context.Context, f store.PublishedFilter) ([]store.Row, error) {
	where := []string{"published_at IS NOT NULL", "parked_at IS NULL"}
	var args []any
	add := func(cond string, vs ...any) {
		where = append(where, cond)
		args = append(args, vs...)
	}
	if f.Topic != "" {
		add("COALESCE(topic, JSON_UNQUOTE(JSON_EXTRACT(event_data, '$.topic')), '') = ?", f.Topic)
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
		add("published_at >= "+fromTimeArg, timeArg(f.Since))
	}
	if !f.Until.IsZero() {
		add("published_at < "+fromTimeArg, timeArg(f.Until))
	}
	if f.After != nil {
		at := timeArg(f.After.PublishedAt)
		add("published_at >= "+fromTimeArg+" AND (published_at > "+fromTimeArg+" OR seq > ?)", at, at, f.After.Seq)
	}
	q := s.selectRows(f.OmitPayload) + " WHERE " + strings.Join(where, " AND ") + " ORDER BY published_at, seq LIMIT ?"
	out, err := s.queryRows(ctx, q, append(args, f.Limit)...)
	if err != nil {
		return nil, fmt.Errorf("list published: %w", err)
	}
	return out, nil
}

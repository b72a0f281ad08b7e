package postgres

import (
	"strconv"
	"strings"
)

// statements are the store's SQL with the table name filled in once.
type statements struct {
	insertOne, insertMany  string
	claimLock, claim       string
	mark, fail, release    string
	deletePublished, stats string
}

// pending is the predicate of rows waiting for publication, matching the
// partial index ix_<table>_unpublished.
const pending = `published_at IS NULL AND parked_at IS NULL`

// claimWindow bounds the claim's walk to this many times its limit (see the
// claim statement).
const claimWindow = 2

// held matches ix_<table>_held: rows that may block later rows of their key.
const held = `published_at IS NULL AND (lease_until IS NOT NULL OR next_attempt_at IS NOT NULL OR parked_at IS NOT NULL)`

func newStatements(table string, notify bool) statements {
	r := strings.NewReplacer("{t}", table, "{pending}", pending, "{held}", held)
	st := statements{
		insertOne: r.Replace(`INSERT INTO {t} (id, topic, event_key, aggregate_type, aggregate_id, event_type, event_data, headers)
VALUES ($1, $2, NULLIF($3, ''), $4, $5, $6, $7::json, $8::jsonb)`),
		// unnest keeps the order of the arrays, so seq follows the call's order.
		insertMany: r.Replace(`INSERT INTO {t} (id, topic, event_key, aggregate_type, aggregate_id, event_type, event_data, headers)
SELECT id, topic, NULLIF(event_key, ''), aggregate_type, aggregate_id, event_type, event_data::json, headers::jsonb
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
	AS u(id, topic, event_key, aggregate_type, aggregate_id, event_type, event_data, headers)`),
		// A row is claimable when pending, not leased, past its backoff, and no
		// earlier row of its key is held (leased, backing off or parked). The
		// NOT EXISTS probes repeat {held} so that the planner uses the small
		// partial index of held rows.
		//
		// The walk in seq order is bounded (P7): a key held by a lease holds
		// back all its later rows, and with several relays (or a hot key
		// settling) most of the backlog can be held that way; an unbounded
		// walk then reads the whole backlog to find nothing, under the
		// claim lock. So the window w takes the first claimWindow×limit rows
		// that are not held back by a backoff or a parked row, and only then
		// are the rows held back by a lease dropped. Leases end within
		// their duration, so a window full of them delays the claim by at
		// most a lease; backoffs and parked rows can last long, so the rows
		// they hold back never fill the window and other keys flow. The
		// join back to the table locks only the rows taken, and repeats the
		// row's own conditions so that a row changed since the snapshot is
		// checked again before it is leased. Joins by ctid are lookups of
		// one row, and the claim runs with hash and merge joins off (see
		// Claim): a join that scans the pending rows is never O(batch).
		claimLock: `SELECT pg_advisory_xact_lock($1), set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)`,
		claim: r.Replace(`WITH cand AS (
	SELECT c.ctid AS tid, c.lease_token AS old_token
	FROM (
		SELECT o.ctid AS tid, o.seq, o.event_key
		FROM {t} o
		WHERE o.published_at IS NULL AND o.parked_at IS NULL
		  AND (o.lease_until IS NULL OR o.lease_until <= now())
		  AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= now())
		  AND (o.event_key IS NULL OR NOT EXISTS (
			SELECT 1 FROM {t} b
			WHERE b.event_key = o.event_key AND b.seq < o.seq
			  AND b.{held}
			  AND (b.next_attempt_at > now() OR b.parked_at IS NOT NULL)))
		ORDER BY o.seq
		LIMIT ` + strconv.Itoa(claimWindow) + ` * $1
	) w JOIN {t} c ON c.ctid = w.tid
	WHERE c.published_at IS NULL AND c.parked_at IS NULL
	  AND (c.lease_until IS NULL OR c.lease_until <= now())
	  AND (c.next_attempt_at IS NULL OR c.next_attempt_at <= now())
	  AND (w.event_key IS NULL OR NOT EXISTS (
		SELECT 1 FROM {t} b
		WHERE b.event_key = w.event_key AND b.seq < w.seq
		  AND b.{held}
		  AND b.lease_until > now()))
	ORDER BY w.seq
	LIMIT $1
	FOR UPDATE OF c SKIP LOCKED
)
UPDATE {t} t SET lease_owner = $2, lease_token = $3, lease_until = now() + $4 * interval '1 microsecond'
FROM cand WHERE t.ctid = cand.tid
RETURNING t.id, t.seq, COALESCE(t.topic, t.event_data->>'topic', ''), COALESCE(t.event_key, ''),
	t.event_type, t.aggregate_type, t.aggregate_id, t.event_data, t.headers, t.retry_count, t.created_at,
	cand.old_token IS NOT NULL, now()`),
		mark: r.Replace(`UPDATE {t} SET published_at = now(), lease_owner = NULL, lease_token = NULL, lease_until = NULL
WHERE id = ANY($1) AND lease_token = $2`),
		fail: r.Replace(`UPDATE {t} t SET retry_count = t.retry_count + 1, last_error = f.err,
	next_attempt_at = CASE WHEN f.park THEN t.next_attempt_at ELSE now() + f.delay_us * interval '1 microsecond' END,
	parked_at = CASE WHEN f.park THEN now() END,
	lease_owner = NULL, lease_token = NULL, lease_until = NULL
FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::bool[]) AS f(id, err, delay_us, park)
WHERE t.id = f.id AND t.lease_token = $5`),
		release: r.Replace(`UPDATE {t} SET lease_owner = NULL, lease_token = NULL, lease_until = NULL,
	next_attempt_at = CASE WHEN $3::bigint > 0 THEN now() + $3 * interval '1 microsecond' ELSE next_attempt_at END
WHERE id = ANY($1) AND lease_token = $2`),
		// ARRAY(...) makes the chunk's rows primary-key lookups; with IN the
		// planner may hash-join against a scan of the whole table.
		deletePublished: r.Replace(`DELETE FROM {t} WHERE id = ANY(ARRAY(
	SELECT id FROM {t}
	WHERE published_at IS NOT NULL AND published_at < now() - $1 * interval '1 microsecond'
	ORDER BY published_at LIMIT $2))`),
		stats: r.Replace(`SELECT
	(SELECT count(*) FROM {t} WHERE {pending}),
	COALESCE((SELECT extract(epoch FROM now() - created_at) FROM {t} WHERE {pending} ORDER BY seq LIMIT 1), 0),
	(SELECT count(*) FROM {t} WHERE published_at IS NULL AND parked_at IS NOT NULL)`),
	}
	if notify {
		// A data-modifying CTE runs to completion whether or not it is
		// read, so the write and its notification stay one statement.
		ch := "'" + channel(table) + "'"
		st.insertOne = "WITH ins AS (" + st.insertOne + ") SELECT pg_notify(" + ch + ", '')"
		st.insertMany = "WITH ins AS (" + st.insertMany + ") SELECT pg_notify(" + ch + ", '')"
	}
	return st
}

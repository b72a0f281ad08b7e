package postgres

import (
	"strconv"
	"strings"

	"github.com/outboxkit/outbox/migrations"
)

// statements are the store's SQL with the table name filled in once.
type statements struct {
	insertOne, insertMany  string
	claimLock, claim       string
	mark, markDelete       string
	fail, release          string
	deletePublished, stats string
}

// pending is the predicate of rows waiting for publication, matching the
// partial index ix_<table>_unpublished.
const pending = `published_at IS NULL AND parked_at IS NULL`

// claimWindow bounds the claim's walk to this many times its limit (see the
// claim statement).
const claimWindow = 2

// held matches ix_<table>_held: rows that hold back later rows of their key.
const held = `published_at IS NULL AND (next_attempt_at IS NOT NULL OR parked_at IS NOT NULL)`

// settle is the frame of the statements that settle events of a claim
// (mark, fail, release), fenced by the claim's token {token}: claim locks
// the claim's row; mine is the part of {ids} that the claim still holds,
// which {done} changes in the outbox; the claim's row forgets {ids}, and
// goes once it holds no event. The statement returns how many rows {done}
// changed. A claim that ended may have lost some of its events to a later
// claim, which took them out of its row: they are not the caller's to
// settle any more.
const settle = `WITH claim AS (
	SELECT event_ids FROM {c} WHERE token = {token} FOR UPDATE
), mine AS (
	SELECT ARRAY(SELECT unnest({ids}) INTERSECT SELECT unnest(event_ids) FROM claim) AS ids
), rest AS (
	SELECT ARRAY(SELECT unnest(event_ids) FROM claim EXCEPT SELECT unnest({ids})) AS ids
), gone AS (
	DELETE FROM {c} WHERE token = {token} AND cardinality((SELECT ids FROM rest)) = 0
), kept AS (
	UPDATE {c} SET event_ids = (SELECT ids FROM rest) WHERE token = {token} AND cardinality((SELECT ids FROM rest)) > 0
), done AS (
	{done}
	RETURNING 1
)
SELECT count(*) FROM done`

func newStatements(table string, notify bool) statements {
	r := strings.NewReplacer("{t}", table, "{c}", migrations.ClaimsTable(table), "{pending}", pending, "{held}", held)
	settleWith := func(token, ids, done string) string {
		return r.Replace(strings.NewReplacer("{token}", token, "{ids}", ids, "{done}", done).Replace(settle))
	}
	st := statements{
		insertOne: r.Replace(`INSERT INTO {t} (id, topic, event_key, aggregate_type, aggregate_id, event_type, event_data, headers)
VALUES ($1, $2, NULLIF($3, ''), $4, $5, $6, $7::json, $8::jsonb)`),
		// unnest keeps the order of the arrays, so seq follows the call's order.
		insertMany: r.Replace(`INSERT INTO {t} (id, topic, event_key, aggregate_type, aggregate_id, event_type, event_data, headers)
SELECT id, topic, NULLIF(event_key, ''), aggregate_type, aggregate_id, event_type, event_data::json, headers::jsonb
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
	AS u(id, topic, event_key, aggregate_type, aggregate_id, event_type, event_data, headers)`),
		// The claim reads the outbox and writes one row: its claim
		// (docs/claim.md). A row is claimable when pending, past its
		// backoff, no earlier row of its key is held (backing off or
		// parked), and no live claim holds its key (or, for a row without
		// a key, the row itself). The NOT EXISTS probe repeats {held} so
		// that the planner uses the small partial index of held rows; the
		// live claims' keys and IDs are hashed sets (NOT IN over a
		// subquery), not arrays searched per row.
		//
		// The walk in seq order is bounded: the window w takes the first
		// claimWindow×limit rows that are not held back by a backoff or a
		// parked row, and only then are the rows of live claims' keys
		// dropped. Claims end within their lease, so a window full of
		// their rows delays the claim by at most a lease; backoffs and
		// parked rows can last long, so the rows they hold back never fill
		// the window and other keys flow.
		//
		// Claims whose lease ended give up the events taken here (which
		// are Reclaimed: their relay may have published them), and go once
		// they hold no pending event. The join back to the table by ctid
		// reads the taken rows from the statement's snapshot; the claim
		// runs with hash and merge joins off (see Claim), so that it is a
		// lookup of each row, never a scan of the pending rows.
		claimLock: `SELECT pg_advisory_xact_lock($1), set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)`,
		claim: r.Replace(`WITH live AS MATERIALIZED (
	SELECT event_ids, event_keys FROM {c} WHERE lease_until > now()
), ended AS MATERIALIZED (
	SELECT token, event_ids FROM {c} WHERE lease_until <= now()
), w AS (
	SELECT o.ctid AS tid, o.id, o.seq, o.event_key
	FROM {t} o
	WHERE o.published_at IS NULL AND o.parked_at IS NULL
	  AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= now())
	  AND (o.event_key IS NULL OR NOT EXISTS (
		SELECT 1 FROM {t} b
		WHERE b.event_key = o.event_key AND b.seq < o.seq
		  AND b.{held}
		  AND (b.next_attempt_at > now() OR b.parked_at IS NOT NULL)))
	ORDER BY o.seq
	LIMIT ` + strconv.Itoa(claimWindow) + ` * $1
), cand AS MATERIALIZED (
	SELECT w.tid, w.id, w.seq, w.event_key FROM w
	WHERE CASE WHEN w.event_key IS NULL
		THEN w.id NOT IN (SELECT unnest(event_ids) FROM live)
		ELSE w.event_key NOT IN (SELECT unnest(event_keys) FROM live) END
	ORDER BY w.seq
	LIMIT $1
), taken AS MATERIALIZED (
	SELECT ARRAY(SELECT id FROM cand) AS ids
), ending AS MATERIALIZED (
	SELECT e.token, e.event_ids, EXISTS (
		SELECT 1 FROM unnest(e.event_ids) AS i(id) JOIN {t} x ON x.id = i.id
		WHERE i.id <> ALL((SELECT ids FROM taken)::uuid[]) AND x.{pending}) AS holds
	FROM ended e
), gone AS (
	DELETE FROM {c} c USING ending e WHERE c.token = e.token AND NOT e.holds
), kept AS (
	UPDATE {c} c SET event_ids = ARRAY(SELECT unnest(c.event_ids) EXCEPT SELECT unnest((SELECT ids FROM taken)::uuid[]))
	FROM ending e
	WHERE c.token = e.token AND e.holds AND e.event_ids && (SELECT ids FROM taken)
), ins AS (
	INSERT INTO {c} (token, owner, lease_until, event_ids, event_keys)
	SELECT $3, $2, now() + $4 * interval '1 microsecond', ids,
		ARRAY(SELECT DISTINCT event_key FROM cand WHERE event_key IS NOT NULL)
	FROM taken WHERE cardinality(ids) > 0
)
SELECT t.id, t.seq, COALESCE(t.topic, t.event_data->>'topic', ''), COALESCE(t.event_key, ''),
	t.event_type, t.aggregate_type, t.aggregate_id, t.event_data, t.headers, t.retry_count, t.created_at,
	t.id IN (SELECT unnest(event_ids) FROM ended), now()
FROM cand JOIN {t} t ON t.ctid = cand.tid
ORDER BY cand.seq`),
		mark: settleWith("$2", "$1::uuid[]", `UPDATE {t} SET published_at = now()
	WHERE id = ANY((SELECT ids FROM mine)::uuid[]) AND published_at IS NULL`),
		markDelete: settleWith("$2", "$1::uuid[]", `DELETE FROM {t}
	WHERE id = ANY((SELECT ids FROM mine)::uuid[]) AND published_at IS NULL`),
		fail: settleWith("$5", "$1::uuid[]", `UPDATE {t} t SET retry_count = t.retry_count + 1, last_error = f.err,
		next_attempt_at = CASE WHEN f.park THEN t.next_attempt_at ELSE now() + f.delay_us * interval '1 microsecond' END,
		parked_at = CASE WHEN f.park THEN now() END
	FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::bool[]) AS f(id, err, delay_us, park)
	WHERE t.id = f.id AND f.id = ANY((SELECT ids FROM mine)::uuid[]) AND t.published_at IS NULL`),
		// A release without delay changes no event: the claim's row
		// forgets them, and its keys hold them until the claim goes.
		release: settleWith("$2", "$1::uuid[]", `UPDATE {t} SET next_attempt_at = now() + $3 * interval '1 microsecond'
	WHERE $3::bigint > 0 AND id = ANY((SELECT ids FROM mine)::uuid[]) AND published_at IS NULL`),
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

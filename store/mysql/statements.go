package mysql

import "strings"

// statements are the store's SQL with the table name filled in once. Those
// that take a list of IDs carry the placeholder {ids}, filled per call by
// [inList]; MySQL has no array parameters.
type statements struct {
	insert                 string
	claim, overtaking      string
	lease                  string
	mark, fail, release    string
	deletePublished, stats string
}

// insertRow is one row of the multi-row INSERT; insertParams is its number
// of bind parameters.
const (
	insertRow    = `(?, ?, NULLIF(?, ''), ?, ?, ?, ?, ?)`
	insertParams = 8
)

// maxInsertRows keeps one INSERT under the 65,535 bind parameters a prepared
// statement may have.
const maxInsertRows = 65535 / insertParams

// pending is the predicate of rows waiting for publication, a prefix of
// ix_<table>_unpublished (published_at, parked_at, seq).
const pending = `published_at IS NULL AND parked_at IS NULL`

// micros reads a TIMESTAMP as microseconds since the epoch: independent of
// the DSN's parseTime and loc, and of the session time zone for columns.
func micros(expr string) string {
	return `CAST(UNIX_TIMESTAMP(` + expr + `) * 1000000 AS SIGNED)`
}

func newStatements(table string) statements {
	r := strings.NewReplacer("{t}", table, "{pending}", pending)
	return statements{
		// VALUES rows get their AUTO_INCREMENT in order, so seq follows the
		// call's order.
		insert: r.Replace(`INSERT INTO {t} (id, topic, event_key, aggregate_type, aggregate_id, event_type, event_data, headers) VALUES `),
		// A row is claimable when pending, not leased, past its backoff, and no
		// earlier row of its key is held (leased, backing off or parked). The
		// walk follows ix_<table>_unpublished in seq order; the probe reads
		// only the held rows of the key through ix_<table>_held, so it stays
		// O(1) per row even for a hot key with a deep backlog. The probe is a subquery, so it is a consistent read
		// of the statement's snapshot, not a locking one: SKIP LOCKED skips
		// candidate rows only, never the rows that block them. The row is
		// read with everything the relay needs, since nothing can change it
		// while the claim holds its lock.
		claim: r.Replace(`SELECT o.id, o.seq, COALESCE(o.topic, JSON_UNQUOTE(JSON_EXTRACT(o.event_data, '$.topic')), ''),
	COALESCE(o.event_key, ''), o.event_type, o.aggregate_type, o.aggregate_id, o.event_data, o.headers,
	o.retry_count, ` + micros("o.created_at") + `, o.lease_token IS NOT NULL, ` + micros("NOW(6)") + `
FROM {t} o
WHERE o.published_at IS NULL AND o.parked_at IS NULL
  AND (o.lease_until IS NULL OR o.lease_until <= NOW(6))
  AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= NOW(6))
  AND (o.event_key IS NULL OR NOT EXISTS (
	SELECT 1 FROM {t} b
	WHERE b.published_at IS NULL AND b.event_key = o.event_key AND b.held = 1 AND b.seq < o.seq
	  AND (b.lease_until > NOW(6) OR b.next_attempt_at > NOW(6) OR b.parked_at IS NOT NULL)))
ORDER BY o.seq
LIMIT ?
FOR UPDATE SKIP LOCKED`),
		// The claim's walk reads the latest committed rows (a locking read) but
		// its probe reads the statement's snapshot: an earlier row of a key
		// that the walk skipped (locked, or not yet committed when the walk
		// passed it) can be invisible to the probe while a later row of the
		// key, committed since, is taken. PostgreSQL's locking reads see only
		// the snapshot and have no such gap. This second statement, with a
		// fresh snapshot that contains everything the walk saw, finds for
		// each key of the claim the first pending row that the claim did not
		// take; the claim gives up its rows of that key after it.
		overtaking: r.Replace(`SELECT event_key, MIN(seq) FROM {t}
WHERE published_at IS NULL AND event_key IN ({keys}) AND seq < ? AND id NOT IN ({ids})
GROUP BY event_key`),
		lease: r.Replace(`UPDATE {t} SET lease_owner = ?, lease_token = ?, lease_until = NOW(6) + INTERVAL ? MICROSECOND
WHERE id IN ({ids})`),
		mark: r.Replace(`UPDATE {t} SET published_at = NOW(6), lease_owner = NULL, lease_token = NULL, lease_until = NULL
WHERE lease_token = ? AND id IN ({ids})`),
		// The failures arrive as a derived table of {rows} (see failRows);
		// the join on the primary key touches only those rows.
		fail: r.Replace(`UPDATE {t} t JOIN ({rows}) f ON t.id = f.id
SET t.retry_count = t.retry_count + 1, t.last_error = f.err,
	t.next_attempt_at = CASE WHEN f.park THEN t.next_attempt_at ELSE NOW(6) + INTERVAL f.delay_us MICROSECOND END,
	t.parked_at = CASE WHEN f.park THEN NOW(6) END,
	t.lease_owner = NULL, t.lease_token = NULL, t.lease_until = NULL
WHERE t.lease_token = ?`),
		release: r.Replace(`UPDATE {t} SET lease_owner = NULL, lease_token = NULL, lease_until = NULL,
	next_attempt_at = CASE WHEN ? > 0 THEN NOW(6) + INTERVAL ? MICROSECOND ELSE next_attempt_at END
WHERE lease_token = ? AND id IN ({ids})`),
		// MySQL cannot delete from a table it reads in a subquery; a
		// single-table DELETE with ORDER BY and LIMIT bounds the chunk instead.
		deletePublished: r.Replace(`DELETE FROM {t}
WHERE published_at IS NOT NULL AND parked_at IS NULL AND published_at < NOW(6) - INTERVAL ? MICROSECOND
ORDER BY published_at LIMIT ?`),
		stats: r.Replace(`SELECT
	(SELECT COUNT(*) FROM {t} WHERE {pending}),
	COALESCE((SELECT TIMESTAMPDIFF(MICROSECOND, created_at, NOW(6)) FROM {t} WHERE {pending} ORDER BY seq LIMIT 1), 0),
	(SELECT COUNT(*) FROM {t} WHERE published_at IS NULL AND parked_at IS NOT NULL)`),
	}
}

// inList fills {ids} in stmt with n placeholders.
func inList(stmt string, n int) string {
	return strings.Replace(stmt, "{ids}", placeholders("?", n), 1)
}

// failRows fills {rows} in the fail statement with a derived table of n
// rows (id, err, delay_us, park).
func failRows(stmt string, n int) string {
	rows := "SELECT ? AS id, ? AS err, ? AS delay_us, ? AS park" + strings.Repeat(" UNION ALL SELECT ?, ?, ?, ?", n-1)
	return strings.Replace(stmt, "{rows}", rows, 1)
}

// placeholders returns n copies of item joined by ", ".
func placeholders(item string, n int) string {
	return strings.TrimSuffix(strings.Repeat(item+", ", n), ", ")
}

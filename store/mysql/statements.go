package mysql

import "strings"

// statements are the store's SQL with the table name filled in once. Those
// that take a list of IDs carry the placeholder {ids}, filled per call by
// [inList]; MySQL has no array parameters.
type statements struct {
	insert                 string
	claim, claimPastHeld   string
	overtaking             string
	lease                  string
	mark, fail, release    string
	expired                string
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

// claimWindow bounds the claim's walk to this many times its limit (see the
// claim statements).
const claimWindow = 4

// claimArgs and claimPastHeldArgs return the claim statements' arguments
// for a limit.
func claimArgs(limit int) []any         { return []any{claimWindow * limit, claimWindow * limit, limit} }
func claimPastHeldArgs(limit int) []any { return []any{claimWindow * limit, limit} }

// claimColumns are what the claim statements return of a row c: everything
// the relay needs, and the database clock. The sentinel of claim has a NULL
// id (and NULLs for the other columns of c).
var claimColumns = `c.id, c.seq, COALESCE(c.topic, JSON_UNQUOTE(JSON_EXTRACT(c.event_data, '$.topic')), ''),
	COALESCE(c.event_key, ''), c.event_type, c.aggregate_type, c.aggregate_id, c.event_data, c.headers,
	c.retry_count, ` + micros("c.created_at") + `, c.lease_token IS NOT NULL, ` + micros("NOW(6)")

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
		// probes read only the held rows of the key through ix_<table>_held,
		// so they stay O(1) per row even for a hot key with a deep backlog.
		// They are subqueries, so they are consistent reads of the
		// statement's snapshot, not locking ones: SKIP LOCKED skips candidate
		// rows only, never the rows that block them. A row is read with
		// everything the relay needs, since nothing can change it while the
		// claim holds its lock.
		//
		// The walk in seq order is bounded (P7): a key held by a lease holds
		// back all its later rows, and with several relays (or a hot key
		// settling) most of the backlog can be held that way; an unbounded
		// walk then reads the whole backlog to find nothing, under the claim
		// lock. The bound is PostgreSQL's (see claimPastHeld), in two
		// statements because MySQL and MariaDB materialize a derived table
		// whole instead of stopping once the query above it has its rows: a
		// window of claimWindow×limit rows with their probes would cost every
		// claim that much, while most claims find their rows among the first
		// limit.
		//
		// claim is the cheap first step: its window w is the first
		// claimWindow×limit pending rows, read from ix_<table>_unpublished
		// alone (no row lookups, no probes). The join back to the table by
		// primary key locks each candidate in seq order, checks it on the
		// locked row and stops at limit claimable rows. The window is a
		// non-locking read, so the claim locks only the rows it looks up by
		// primary key, and no ranges; READ COMMITTED releases those it does
		// not take. When the claim reaches the end of a full
		// window without its limit, it returns the window's sentinel, the
		// seq of the next pending row with a NULL id, for which the outer
		// join finds no c: rows of the window were not claimable, perhaps
		// held back by a backoff or a parked row, and claimPastHeld looks
		// past them. A claim that finds its limit in the window, or whose
		// window is not full (an idle table, a short backlog), is the only
		// statement.
		claim: r.Replace(`SELECT ` + claimColumns + `
FROM (
	(SELECT p.id, p.seq FROM {t} p
	WHERE p.published_at IS NULL AND p.parked_at IS NULL
	ORDER BY p.seq
	LIMIT ?)
	UNION ALL
	(SELECT NULL, p.seq FROM {t} p
	WHERE p.published_at IS NULL AND p.parked_at IS NULL
	ORDER BY p.seq
	LIMIT ?, 1)
) w LEFT JOIN {t} c ON c.id = w.id
	AND c.published_at IS NULL AND c.parked_at IS NULL
	AND (c.lease_until IS NULL OR c.lease_until <= NOW(6))
	AND (c.next_attempt_at IS NULL OR c.next_attempt_at <= NOW(6))
	AND (c.event_key IS NULL OR NOT EXISTS (
		SELECT 1 FROM {t} b
		WHERE b.published_at IS NULL AND b.event_key = c.event_key AND b.held = 1 AND b.seq < c.seq
		  AND (b.lease_until > NOW(6) OR b.next_attempt_at > NOW(6) OR b.parked_at IS NOT NULL)))
WHERE c.id IS NOT NULL OR w.id IS NULL
ORDER BY w.seq
LIMIT ?
FOR UPDATE SKIP LOCKED`),
		// claimPastHeld runs when claim returned its sentinel. Rows held back
		// by a backoff or a parked row can fill claim's window, and they can
		// stay for long: other keys must still flow (P5). Its window w is
		// PostgreSQL's: the first claimWindow×limit pending, self-claimable
		// rows that are not held back by a backoff or a parked row; only then
		// are the rows held back by a lease dropped. Leases end within their
		// duration, so a window full of them delays the claim by at most a
		// lease; the rows that backoffs and parked rows hold back never fill
		// the window. The lease probe reads the window's rows before the
		// join, so that rows held back by a lease are neither looked up nor
		// locked. The join back to the table by primary key locks the rest in
		// seq order, repeats the row's own conditions on the locked row (a
		// row changed since the snapshot is checked again) and stops at limit
		// rows.
		claimPastHeld: r.Replace(`SELECT ` + claimColumns + `
FROM (
	SELECT o.id, o.seq, o.event_key
	FROM {t} o
	WHERE o.published_at IS NULL AND o.parked_at IS NULL
	  AND (o.lease_until IS NULL OR o.lease_until <= NOW(6))
	  AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= NOW(6))
	  AND (o.event_key IS NULL OR NOT EXISTS (
		SELECT 1 FROM {t} b
		WHERE b.published_at IS NULL AND b.event_key = o.event_key AND b.held = 1 AND b.seq < o.seq
		  AND (b.next_attempt_at > NOW(6) OR b.parked_at IS NOT NULL)))
	ORDER BY o.seq
	LIMIT ?
) w STRAIGHT_JOIN {t} c ON c.id = w.id
WHERE c.published_at IS NULL AND c.parked_at IS NULL
  AND (c.lease_until IS NULL OR c.lease_until <= NOW(6))
  AND (c.next_attempt_at IS NULL OR c.next_attempt_at <= NOW(6))
  AND (w.event_key IS NULL OR NOT EXISTS (
	SELECT 1 FROM {t} b
	WHERE b.published_at IS NULL AND b.event_key = w.event_key AND b.held = 1 AND b.seq < w.seq
	  AND b.lease_until > NOW(6)))
ORDER BY w.seq
LIMIT ?
FOR UPDATE SKIP LOCKED`),
		// The claim locks its rows with locking reads, which see the latest
		// committed rows, but its window and probes read the statement's
		// snapshot: an earlier row of a key that the claim skipped (locked,
		// or not yet committed when the snapshot was taken) can be invisible
		// to the probe while a later row of the key is taken. PostgreSQL's
		// locking reads see only the snapshot and have no such gap. This
		// statement, with a fresh snapshot that contains everything the claim
		// saw, finds for each key of the claim the first pending row that the
		// claim did not take; the claim gives up its rows of that key after
		// it.
		overtaking: r.Replace(`SELECT event_key, MIN(seq) FROM {t}
WHERE published_at IS NULL AND event_key IN ({keys}) AND seq < ? AND id NOT IN ({ids})
GROUP BY event_key`),
		// The statements that change rows given by ID read them by primary
		// key, whatever the optimizer estimates: on a small table it scans
		// the whole primary key instead, and locks every row it passes.
		lease: r.Replace(`UPDATE {t} FORCE INDEX (PRIMARY) SET lease_owner = ?, lease_token = ?, lease_until = NOW(6) + INTERVAL ? MICROSECOND
WHERE id IN ({ids})`),
		mark: r.Replace(`UPDATE {t} FORCE INDEX (PRIMARY) SET published_at = NOW(6), lease_owner = NULL, lease_token = NULL, lease_until = NULL
WHERE lease_token = ? AND id IN ({ids})`),
		// The failures arrive as a derived table of {rows} (see failRows).
		fail: r.Replace(`UPDATE {t} t FORCE INDEX (PRIMARY) JOIN ({rows}) f ON t.id = f.id
SET t.retry_count = t.retry_count + 1, t.last_error = f.err,
	t.next_attempt_at = CASE WHEN f.park THEN t.next_attempt_at ELSE NOW(6) + INTERVAL f.delay_us MICROSECOND END,
	t.parked_at = CASE WHEN f.park THEN NOW(6) END,
	t.lease_owner = NULL, t.lease_token = NULL, t.lease_until = NULL
WHERE t.lease_token = ?`),
		release: r.Replace(`UPDATE {t} FORCE INDEX (PRIMARY) SET lease_owner = NULL, lease_token = NULL, lease_until = NULL,
	next_attempt_at = CASE WHEN ? > 0 THEN NOW(6) + INTERVAL ? MICROSECOND ELSE next_attempt_at END
WHERE lease_token = ? AND id IN ({ids})`),
		// The janitor's chunk: expired reads its IDs, oldest first, and
		// deletePublished deletes them by primary key (MySQL cannot delete
		// from a table it reads in a subquery), checking them again.
		expired: r.Replace(`SELECT id FROM {t}
WHERE published_at IS NOT NULL AND published_at < NOW(6) - INTERVAL ? MICROSECOND
ORDER BY published_at LIMIT ?`),
		deletePublished: r.Replace(`DELETE t FROM {t} t FORCE INDEX (PRIMARY)
WHERE t.published_at IS NOT NULL AND t.published_at < NOW(6) - INTERVAL ? MICROSECOND
	AND t.id IN ({ids})`),
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

package mysql

import (
	"strings"

	"github.com/outboxkit/outbox/internal/sqlwrite"
	"github.com/outboxkit/outbox/migrations"
)

// statements are the store's SQL with the table name filled in once. Those
// that take a list of IDs carry the placeholder {ids}, filled per call by
// [inList]; MySQL has no array parameters.
type statements struct {
	claims, lockClaims, window string
	pendingOf                  string
	insertClaim, lockClaim     string
	updateClaim, deleteClaim   string
	mark, markDelete           string
	fail, release              string
	expired                    string
	deletePublished, stats     string
}

// pending is the predicate of rows waiting for publication, a prefix of
// ix_<table>_unpublished (published_at, parked_at, seq).
const pending = `published_at IS NULL AND parked_at IS NULL`

// claimWindow bounds the claim's walk to this many times its limit (see the
// window statement).
const claimWindow = 2

// claimColumns are what a claim returns of a row c: everything the relay
// needs, and the database clock.
var claimColumns = `c.id, c.seq, COALESCE(c.topic, JSON_UNQUOTE(JSON_EXTRACT(c.event_data, '$.topic')), ''),
	COALESCE(c.event_key, ''), c.event_type, c.aggregate_type, c.aggregate_id, c.event_data, c.headers,
	c.retry_count, ` + micros("c.created_at") + `, ` + micros("NOW(6)")

// micros reads a TIMESTAMP as microseconds since the epoch: independent of
// the DSN's parseTime and loc, and of the session time zone for columns.
func micros(expr string) string {
	return `CAST(UNIX_TIMESTAMP(` + expr + `) * 1000000 AS SIGNED)`
}

func newStatements(table string) statements {
	r := strings.NewReplacer("{t}", table, "{c}", migrations.ClaimsTable(table), "{pending}", pending)
	return statements{
		// The claim reads the claims (a consistent read: it locks nothing
		// that a settle holds), then locks by primary key the ended ones
		// whose events it may take over.
		claims:     r.Replace(`SELECT token, lease_until > NOW(6), event_ids, event_keys FROM {c}`),
		lockClaims: r.Replace(`SELECT token, event_ids FROM {c} WHERE token IN ({ids}) FOR UPDATE`),
		// The window is the first claimWindow×limit pending rows in seq
		// order that are past their backoff and not held back by a
		// backed-off or parked earlier row of their key, with everything
		// the relay needs: a consistent, non-locking read of one snapshot,
		// so it takes no locks that a writer could wait for. The probe reads only the held rows of the
		// key through ix_<table>_held, so it stays O(1) per row even for a
		// hot key with a deep backlog. The claim then drops, in Go, the rows
		// whose key (or, without a key, whose ID) a live claim holds: claims
		// end within their lease, so a window full of their rows delays the
		// claim by at most a lease, while backoffs and parked rows, which
		// can last long, never fill it.
		window: r.Replace(`SELECT ` + claimColumns + `, c.event_key IS NULL FROM {t} c
WHERE c.published_at IS NULL AND c.parked_at IS NULL
  AND (c.next_attempt_at IS NULL OR c.next_attempt_at <= NOW(6))
  AND (c.event_key IS NULL OR NOT EXISTS (
	SELECT 1 FROM {t} b
	WHERE b.published_at IS NULL AND b.event_key = c.event_key AND b.held = 1 AND b.seq < c.seq
	  AND (b.next_attempt_at > NOW(6) OR b.parked_at IS NOT NULL)))
ORDER BY c.seq
LIMIT ?`),
		pendingOf: r.Replace(`SELECT COUNT(*) FROM {t} FORCE INDEX (PRIMARY) WHERE {pending} AND id IN ({ids})`),
		insertClaim: r.Replace(`INSERT INTO {c} (token, owner, lease_until, event_ids, event_keys)
VALUES (?, ?, NOW(6) + INTERVAL ? MICROSECOND, ?, ?)`),
		lockClaim:   r.Replace(`SELECT event_ids FROM {c} WHERE token = ? FOR UPDATE`),
		updateClaim: r.Replace(`UPDATE {c} SET event_ids = ? WHERE token = ?`),
		deleteClaim: r.Replace(`DELETE FROM {c} WHERE token = ?`),
		// The statements that change rows given by ID read them by primary
		// key, whatever the optimizer estimates: on a small table it scans
		// the whole primary key instead, and locks every row it passes.
		mark: r.Replace(`UPDATE {t} FORCE INDEX (PRIMARY) SET published_at = NOW(6)
WHERE published_at IS NULL AND id IN ({ids})`),
		markDelete: r.Replace(`DELETE t FROM {t} t FORCE INDEX (PRIMARY)
WHERE t.published_at IS NULL AND t.id IN ({ids})`),
		// The failures arrive as a derived table of {rows} (see failRows).
		fail: r.Replace(`UPDATE {t} t FORCE INDEX (PRIMARY) JOIN ({rows}) f ON t.id = f.id
SET t.retry_count = t.retry_count + 1, t.last_error = f.err,
	t.next_attempt_at = CASE WHEN f.park THEN t.next_attempt_at ELSE NOW(6) + INTERVAL f.delay_us MICROSECOND END,
	t.parked_at = CASE WHEN f.park THEN NOW(6) END
WHERE t.published_at IS NULL`),
		release: r.Replace(`UPDATE {t} FORCE INDEX (PRIMARY) SET next_attempt_at = NOW(6) + INTERVAL ? MICROSECOND
WHERE published_at IS NULL AND id IN ({ids})`),
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
	return strings.Replace(stmt, "{ids}", sqlwrite.Placeholders("?", n), 1)
}

// failRows fills {rows} in the fail statement with a derived table of n
// rows (id, err, delay_us, park).
func failRows(stmt string, n int) string {
	rows := "SELECT ? AS id, ? AS err, ? AS delay_us, ? AS park" + strings.Repeat(" UNION ALL SELECT ?, ?, ?, ?", n-1)
	return strings.Replace(stmt, "{rows}", rows, 1)
}

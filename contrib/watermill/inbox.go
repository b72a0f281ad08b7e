package outboxwatermill

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"

	"github.com/outboxkit/outbox/migrations"
)

// DefaultInboxTable is the inbox table's default name.
const DefaultInboxTable = "event_inbox"

// maxInboxID bounds the consumer name and the message UUID, the width of
// their columns.
const maxInboxID = 255

// InboxConfig configures an [Inbox]. The zero value means the defaults.
type InboxConfig struct {
	// Table is the inbox table, optionally schema-qualified, created by
	// MigrateInbox. Defaults to DefaultInboxTable.
	Table string
	// OnDuplicate is called for each message that the inbox acks without
	// running the handler because the handler already handled it, e.g. to
	// count redeliveries. Defaults to none.
	OnDuplicate func(msg *message.Message)
}

// TxHandlerFunc handles a message inside the inbox's transaction tx. Its
// database effects belong in tx; publish through NewPublisher(st, tx) so that
// the messages it produces are written in tx too. Returning an error rolls tx
// back and nacks the message.
type TxHandlerFunc[Tx any] func(ctx context.Context, tx Tx, msg *message.Message) error

// Inbox records which messages a handler has handled, in the handler's own
// transaction, so that a redelivered message is acked without running the
// handler's effects twice: exactly-once effects on top of at-least-once
// delivery. It is safe for concurrent use.
//
// A message is identified by its UUID (the event ID, for messages from the
// outbox) and the handler by its router handler name: renaming a handler
// forgets what it handled. Two deliveries of one message at the same time
// do not both run: the second waits on the first's row and then acks.
type Inbox[Tx any] struct {
	onDuplicate func(*message.Message)
	begin       func(context.Context) (Tx, error)
	// record inserts the row and reports whether it was new.
	record           func(ctx context.Context, tx Tx, consumer, id string) (bool, error)
	commit, rollback func(context.Context, Tx) error
	// prune deletes at most limit rows older than olderThan.
	prune func(ctx context.Context, olderThan time.Duration, limit int) (int64, error)
}

// PgxBeginner begins pgx transactions: *pgxpool.Pool, *pgx.Conn.
type PgxBeginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// NewPgxInbox returns an inbox in PostgreSQL whose handlers run in pgx
// transactions of db. The caller keeps ownership of db.
func NewPgxInbox(db PgxBeginner, cfg InboxConfig) (*Inbox[pgx.Tx], error) {
	if db == nil {
		return nil, errors.New("outboxwatermill: nil pgx database")
	}
	table := cmp.Or(cfg.Table, DefaultInboxTable)
	if err := migrations.ValidateTable(table); err != nil {
		return nil, err
	}
	insert := "INSERT INTO " + table + " (consumer, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
	prune := pgPrune(table)
	return &Inbox[pgx.Tx]{
		onDuplicate: cfg.OnDuplicate,
		begin:       db.Begin,
		record: func(ctx context.Context, tx pgx.Tx, consumer, id string) (bool, error) {
			tag, err := tx.Exec(ctx, insert, consumer, id)
			return tag.RowsAffected() == 1, err
		},
		commit:   func(ctx context.Context, tx pgx.Tx) error { return tx.Commit(ctx) },
		rollback: func(ctx context.Context, tx pgx.Tx) error { return tx.Rollback(ctx) },
		prune: func(ctx context.Context, olderThan time.Duration, limit int) (int64, error) {
			var n int64
			err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
				tag, err := tx.Exec(ctx, prune, olderThan.Microseconds(), limit)
				n = tag.RowsAffected()
				return err
			})
			return n, err
		},
	}, nil
}

// NewSQLInbox returns an inbox whose handlers run in database/sql
// transactions of db, in dialect d: migrations.MySQL for MySQL and MariaDB,
// or migrations.PostgreSQL. The caller keeps ownership of db.
func NewSQLInbox(db *sql.DB, d migrations.Dialect, cfg InboxConfig) (*Inbox[*sql.Tx], error) {
	if db == nil {
		return nil, errors.New("outboxwatermill: nil *sql.DB")
	}
	table := cmp.Or(cfg.Table, DefaultInboxTable)
	if err := migrations.ValidateTable(table); err != nil {
		return nil, err
	}
	var insert, prune string
	switch d.Name() {
	case migrations.PostgreSQL.Name():
		insert = "INSERT INTO " + table + " (consumer, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
		prune = pgPrune(table)
	case migrations.MySQL.Name():
		// IGNORE also turns errors such as truncation into warnings; the
		// handler checks the lengths before, so only the duplicate key is
		// left to ignore.
		insert = "INSERT IGNORE INTO " + table + " (consumer, message_id) VALUES (?, ?)"
		prune = "DELETE FROM " + table + " WHERE processed_at < NOW(6) - INTERVAL ? MICROSECOND ORDER BY processed_at LIMIT ?"
	default:
		return nil, fmt.Errorf("outboxwatermill: inbox: unknown dialect %q", d.Name())
	}
	return &Inbox[*sql.Tx]{
		onDuplicate: cfg.OnDuplicate,
		begin:       func(ctx context.Context) (*sql.Tx, error) { return db.BeginTx(ctx, nil) },
		record: func(ctx context.Context, tx *sql.Tx, consumer, id string) (bool, error) {
			res, err := tx.ExecContext(ctx, insert, consumer, id)
			if err != nil {
				return false, err
			}
			n, err := res.RowsAffected()
			return n == 1, err
		},
		commit:   func(_ context.Context, tx *sql.Tx) error { return tx.Commit() },
		rollback: func(_ context.Context, tx *sql.Tx) error { return tx.Rollback() },
		prune: func(ctx context.Context, olderThan time.Duration, limit int) (int64, error) {
			res, err := db.ExecContext(ctx, prune, olderThan.Microseconds(), limit)
			if err != nil {
				return 0, err
			}
			return res.RowsAffected()
		},
	}, nil
}

// pgPrune deletes a chunk of old rows in PostgreSQL, where DELETE has no
// LIMIT: the rows are found through the processed_at index.
func pgPrune(table string) string {
	return "DELETE FROM " + table + " WHERE ctid = ANY(ARRAY(SELECT ctid FROM " + table +
		" WHERE processed_at < now() - $1 * interval '1 microsecond' LIMIT $2))"
}

// pruneChunk is how many rows one statement of Prune deletes.
const pruneChunk = 1000

// Prune deletes the rows of messages handled more than olderThan ago, in
// chunks of 1,000 rows so that no statement holds many locks, and returns
// how many it deleted. Run it periodically: the inbox has one row per
// handled message and handler, and nothing else removes them.
//
// A message whose row is gone runs its handler again if it is delivered
// again, so olderThan must be longer than the broker can redeliver a
// message: the topic's retention, or how far back a consumer group can be
// reset.
func (in *Inbox[Tx]) Prune(ctx context.Context, olderThan time.Duration) (int64, error) {
	if olderThan <= 0 {
		return 0, fmt.Errorf("outboxwatermill: Prune: olderThan must be positive, got %v", olderThan)
	}
	var total int64
	for {
		n, err := in.prune(ctx, olderThan, pruneChunk)
		total += n
		if err != nil {
			return total, fmt.Errorf("inbox: prune: %w", err)
		}
		if n < pruneChunk {
			return total, nil
		}
	}
}

// Handler returns a router handler that runs h at most once per message.
// For each message it begins a transaction, inserts (handler name, message
// UUID) into the inbox, and then either acks at once (the row existed: the
// message was handled before) or runs h and commits, so that the row, h's
// effects and the messages h publishes through the outbox commit together
// or not at all. If h fails or the commit fails, the message is nacked and
// redelivered; a commit that succeeded although its error says otherwise
// is caught by the row at the redelivery.
//
// Use it with router.AddConsumerHandler: a handler that returns messages
// would have them published after the commit, outside the transaction, and
// lost if publishing failed, since the redelivery is acked as a duplicate.
func (in *Inbox[Tx]) Handler(h TxHandlerFunc[Tx]) message.NoPublishHandlerFunc {
	return func(msg *message.Message) (err error) {
		ctx := msg.Context()
		consumer := message.HandlerNameFromCtx(ctx)
		switch {
		case msg.UUID == "":
			return errors.New("inbox: message without UUID")
		case len(msg.UUID) > maxInboxID || len(consumer) > maxInboxID:
			return fmt.Errorf("inbox: message UUID or handler name longer than %d bytes", maxInboxID)
		}
		tx, err := in.begin(ctx)
		if err != nil {
			return fmt.Errorf("inbox: begin: %w", err)
		}
		committed := false
		defer func() {
			if !committed {
				if rerr := in.rollback(context.WithoutCancel(ctx), tx); rerr != nil && err == nil {
					err = fmt.Errorf("inbox: rollback: %w", rerr)
				}
			}
		}()
		first, err := in.record(ctx, tx, consumer, msg.UUID)
		if err != nil {
			return fmt.Errorf("inbox: record %s: %w", msg.UUID, err)
		}
		if !first {
			if in.onDuplicate != nil {
				in.onDuplicate(msg)
			}
			return nil
		}
		if err := h(ctx, tx, msg); err != nil {
			return err
		}
		committed = true
		if err := in.commit(ctx, tx); err != nil {
			return fmt.Errorf("inbox: commit %s: %w", msg.UUID, err)
		}
		return nil
	}
}

package outboxwatermill_test

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
	outboxwatermill "github.com/outboxkit/outbox/contrib/watermill"
	"github.com/outboxkit/outbox/internal/faulttest"
	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/store"
	"github.com/outboxkit/outbox/store/postgres"
)

// captureTx stands in for a transaction: it keeps what was written, after
// the same preparation and validation a store does.
type captureTx struct{ events []outbox.Event }

type captureWriter struct{}

func (captureWriter) AddTx(ctx context.Context, tx *captureTx, events ...outbox.Event) error {
	evs, err := outbox.Prepare(ctx, outbox.Limits{}, events)
	if err != nil {
		return err
	}
	tx.events = append(tx.events, evs...)
	return nil
}

func TestPublisherMapsMessages(t *testing.T) {
	t.Parallel()
	id := watermill.NewUUID()
	tests := []struct {
		name      string
		metadata  message.Metadata
		opts      []outboxwatermill.PublisherOption
		key       string
		unordered bool
		eventType string
	}{
		{name: "partition_key first", metadata: message.Metadata{"partition_key": "p1", "aggregate_id": "a1"},
			key: "p1", eventType: "orders"},
		{name: "aggregate_id next", metadata: message.Metadata{"aggregate_id": "a1", "aggregate_type": "order", "event_type": "order.placed.v1"},
			key: "a1", eventType: "order.placed.v1"},
		{name: "else unordered", metadata: message.Metadata{}, unordered: true, eventType: "orders"},
		{name: "options", metadata: message.Metadata{"tenant": "t9"},
			opts: []outboxwatermill.PublisherOption{
				outboxwatermill.WithKeyFunc(func(_ string, m *message.Message) string { return m.Metadata.Get("tenant") }),
				outboxwatermill.WithEventTypeFunc(func(topic string, _ *message.Message) string { return topic + ".v2" }),
			},
			key: "t9", eventType: "orders.v2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tx := &captureTx{}
			msg := message.NewMessage(id, []byte(`{"total": 12}`))
			msg.Metadata = tt.metadata
			msg.Metadata.Set(outbox.HeaderCorrelationID, "corr-1")
			msg.Metadata.Set(outbox.HeaderMessageUUID, id) // as on a consumed message: dropped, not rejected
			require.NoError(t, outboxwatermill.NewPublisher(captureWriter{}, tx, tt.opts...).Publish("orders", msg))

			require.Len(t, tx.events, 1)
			e := tx.events[0]
			require.Equal(t, id, e.ID.String())
			require.Equal(t, "orders", e.Topic)
			require.Equal(t, tt.key, e.Key)
			require.Equal(t, tt.unordered, e.Unordered)
			require.Equal(t, tt.eventType, e.EventType)
			require.Equal(t, tt.metadata.Get("aggregate_id"), e.AggregateID)
			require.Equal(t, tt.metadata.Get("aggregate_type"), e.AggregateType)
			require.Equal(t, `{"total": 12}`, string(e.Payload))
			want := maps.Clone(map[string]string(msg.Metadata))
			delete(want, outbox.HeaderMessageUUID)
			require.Equal(t, want, e.Headers)
		})
	}
}

func TestPublisherEmptyUUIDGetsOne(t *testing.T) {
	t.Parallel()
	tx := &captureTx{}
	msg := message.NewMessage("", []byte(`{}`))
	require.NoError(t, outboxwatermill.NewPublisher(captureWriter{}, tx).Publish("orders", msg))
	id, err := uuid.Parse(msg.UUID)
	require.NoError(t, err)
	require.Equal(t, uuid.Version(7), id.Version())
	require.Equal(t, id, tx.events[0].ID)
}

func TestPublisherRejects(t *testing.T) {
	t.Parallel()
	valid := func() *message.Message { return message.NewMessage(watermill.NewUUID(), []byte(`{}`)) }
	tests := []struct {
		name string
		msg  func() *message.Message
		want error
	}{
		{"ULID", func() *message.Message { return message.NewMessage(watermill.NewULID(), []byte(`{}`)) }, outboxwatermill.ErrInvalidUUID},
		{"upper-case UUID", func() *message.Message {
			return message.NewMessage("6BA7B810-9DAD-11D1-80B4-00C04FD430C8", []byte(`{}`))
		}, outboxwatermill.ErrInvalidUUID},
		{"payload not JSON", func() *message.Message { return message.NewMessage(watermill.NewUUID(), []byte("x")) }, outbox.ErrInvalidPayload},
		{"empty payload", func() *message.Message { return message.NewMessage(watermill.NewUUID(), nil) }, outbox.ErrInvalidPayload},
		{"UUID metadata contradicts", func() *message.Message {
			m := valid()
			m.Metadata.Set(outbox.HeaderMessageUUID, watermill.NewUUID())
			return m
		}, outbox.ErrReservedHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tx := &captureTx{}
			err := outboxwatermill.NewPublisher(captureWriter{}, tx).Publish("orders", valid(), tt.msg())
			require.ErrorIs(t, err, tt.want)
			require.ErrorIs(t, err, outbox.ErrInvalidEvent)
			var ve *outbox.ValidationError
			require.ErrorAs(t, err, &ve)
			require.Equal(t, 1, ve.Index, "index of the offending message in the call")
			require.Empty(t, tx.events, "a call is written all or nothing")
		})
	}

	pub := outboxwatermill.NewPublisher(captureWriter{}, &captureTx{})
	require.NoError(t, pub.Close())
	require.ErrorIs(t, pub.Publish("orders", valid()), outboxwatermill.ErrPublisherClosed)
}

// A handler's transaction that rolls back publishes nothing: its message
// never reaches the broker, while a sentinel written after it in a committed
// transaction does, which proves that the relay had caught up past it.
func TestRolledBackHandlerPublishesNothing(t *testing.T) {
	t.Parallel()
	type handler func(ctx context.Context, msg *message.Message, commit bool) error
	cases := []struct {
		name string
		// setup returns the store, a counter of the rows with an ID, and the
		// handler.
		setup func(t *testing.T) (store.Store, func(id string) int, handler)
	}{
		{"postgres", func(t *testing.T) (store.Store, func(string) int, handler) {
			st := testenv.PostgresStore(t, postgres.Config{})
			db := stdlib.OpenDBFromPool(st.Pool())
			t.Cleanup(func() { db.Close() })
			rows := func(id string) int { return count(t, db, "SELECT count(*) FROM "+st.Table()+" WHERE id = $1", id) }
			return st, rows, func(ctx context.Context, msg *message.Message, commit bool) error {
				tx, err := st.Pool().Begin(ctx)
				if err != nil {
					return err
				}
				defer tx.Rollback(ctx)
				if err := outboxwatermill.NewPublisher(st, tx).Publish("orders", msg); err != nil {
					return err
				}
				if commit {
					return tx.Commit(ctx)
				}
				return tx.Rollback(ctx)
			}
		}},
		{"mysql", func(t *testing.T) (store.Store, func(string) int, handler) {
			st := mysqlStore(t)
			rows := func(id string) int { return count(t, st.DB(), "SELECT count(*) FROM "+st.Table()+" WHERE id = ?", id) }
			return st, rows, func(ctx context.Context, msg *message.Message, commit bool) error {
				tx, err := st.DB().BeginTx(ctx, nil)
				if err != nil {
					return err
				}
				defer tx.Rollback()
				if err := outboxwatermill.NewPublisher(st, tx).Publish("orders", msg); err != nil {
					return err
				}
				if commit {
					return tx.Commit()
				}
				return tx.Rollback()
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			st, rows, handle := c.setup(t)
			rec := faulttest.NewRecorder()
			runRelay(t, st, rec)
			ctx := context.Background()

			rolledBack := message.NewMessage(watermill.NewUUID(), []byte(`{"order":"rolled-back"}`))
			rolledBack.Metadata.Set(outboxwatermill.MetadataPartitionKey, "order-1")
			require.NoError(t, handle(ctx, rolledBack, false))
			sentinel := message.NewMessage(watermill.NewUUID(), []byte(`{"order":"sentinel"}`))
			sentinel.Metadata.Set(outboxwatermill.MetadataPartitionKey, "order-1")
			require.NoError(t, handle(ctx, sentinel, true))

			eventually(t, 10*time.Second, func() bool { return len(rec.Messages()) > 0 }, "sentinel not published")
			time.Sleep(100 * time.Millisecond) // a few more relay polls
			var ids []string
			for _, m := range rec.Messages() {
				ids = append(ids, m.ID.String())
			}
			require.Equal(t, []string{sentinel.UUID}, ids)
			require.Zero(t, rows(rolledBack.UUID))
			require.Equal(t, 1, rows(sentinel.UUID))
		})
	}
}

// An invalid message fails before any SQL runs: the PostgreSQL transaction
// stays usable and commits what the handler wrote before and after.
func TestInvalidMessageLeavesTxUsable(t *testing.T) {
	t.Parallel()
	st := testenv.PostgresStore(t, postgres.Config{})
	ctx := context.Background()
	tx, err := st.Pool().Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	pub := outboxwatermill.NewPublisher(st, tx)
	err = pub.Publish("orders", message.NewMessage(watermill.NewUUID(), []byte("not json")))
	require.ErrorIs(t, err, outbox.ErrInvalidPayload)
	require.NoError(t, pub.Publish("orders", message.NewMessage(watermill.NewUUID(), []byte(`{}`))))
	require.NoError(t, tx.Commit(ctx))
	stats, err := st.Stats(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, stats.Pending)
}

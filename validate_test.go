package outbox_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
)

func valid() outbox.Event {
	return outbox.Event{Topic: "orders", AggregateType: "order", AggregateID: "o-1", EventType: "order.created.v1", Payload: []byte(`{"a":1}`)}
}

// Clear errors: each bad input gets its typed error before any SQL.
func TestPrepareRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(*outbox.Event)
		limits outbox.Limits
		want   error
	}{
		{"empty topic", func(e *outbox.Event) { e.Topic = "" }, outbox.Limits{}, outbox.ErrEmptyTopic},
		{"topic with space", func(e *outbox.Event) { e.Topic = "my topic" }, outbox.Limits{}, outbox.ErrInvalidTopic},
		{"topic dot", func(e *outbox.Event) { e.Topic = "." }, outbox.Limits{}, outbox.ErrInvalidTopic},
		{"topic dotdot", func(e *outbox.Event) { e.Topic = ".." }, outbox.Limits{}, outbox.ErrInvalidTopic},
		{"topic too long", func(e *outbox.Event) { e.Topic = strings.Repeat("t", 250) }, outbox.Limits{}, outbox.ErrInvalidTopic},
		{"empty event type", func(e *outbox.Event) { e.EventType = " " }, outbox.Limits{}, outbox.ErrEmptyEventType},
		{"empty key", func(e *outbox.Event) { e.AggregateID = "" }, outbox.Limits{}, outbox.ErrEmptyKey},
		{"payload not JSON", func(e *outbox.Event) { e.Payload = []byte(`{"a":`) }, outbox.Limits{}, outbox.ErrInvalidPayload},
		{"empty payload", func(e *outbox.Event) { e.Payload = nil }, outbox.Limits{}, outbox.ErrInvalidPayload},
		{"payload with NUL escape", func(e *outbox.Event) { e.Payload = []byte(`{"a":"x\u0000y"}`) }, outbox.Limits{}, outbox.ErrInvalidPayload},
		{"payload over record limit", func(e *outbox.Event) { e.Payload = []byte(`"` + strings.Repeat("x", 1_000_000) + `"`) }, outbox.Limits{}, outbox.ErrTooLarge},
		{"key over key limit", func(e *outbox.Event) { e.Key = strings.Repeat("k", 65) }, outbox.Limits{MaxKeyBytes: 64}, outbox.ErrTooLarge},
		{"headers over header limit", func(e *outbox.Event) { e.Headers = map[string]string{"h": strings.Repeat("v", 200)} }, outbox.Limits{MaxHeaderBytes: 100}, outbox.ErrTooLarge},
		{"reserved header", func(e *outbox.Event) { e.Headers = map[string]string{outbox.HeaderMessageUUID: "x"} }, outbox.Limits{}, outbox.ErrReservedHeader},
		{"empty header name", func(e *outbox.Event) { e.Headers = map[string]string{"": "x"} }, outbox.Limits{}, outbox.ErrInvalidHeader},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := valid()
			tc.mutate(&e)
			_, err := outbox.Prepare(context.Background(), tc.limits, []outbox.Event{valid(), e})
			require.ErrorIs(t, err, tc.want)
			require.ErrorIs(t, err, outbox.ErrInvalidEvent)
			var ve *outbox.ValidationError
			require.True(t, errors.As(err, &ve))
			require.Equal(t, 1, ve.Index)
			require.NotEqual(t, uuid.Nil, ve.EventID)
		})
	}
}

func TestPrepareAccepts(t *testing.T) {
	t.Parallel()
	escaped := valid()
	escaped.Payload = []byte(`{"path":"C:\\u0000dir"}`) // a literal backslash, not a NUL
	unordered := valid()
	unordered.AggregateID, unordered.Unordered = "", true
	out, err := outbox.Prepare(context.Background(), outbox.Limits{}, []outbox.Event{valid(), escaped, unordered})
	require.NoError(t, err)
	require.Equal(t, "o-1", out[0].Key, "key defaults to the aggregate ID")
	require.Equal(t, uuid.Version(7), out[0].ID.Version(), "a zero ID gets a UUIDv7")
	require.Empty(t, out[2].Key)
	require.NotEmpty(t, out[0].Headers[outbox.HeaderCorrelationID], "a correlation ID is generated")
}

func TestPrepareCorrelationID(t *testing.T) {
	t.Parallel()
	ctx := outbox.WithCorrelationID(context.Background(), "from-ctx")
	withHeader := valid()
	withHeader.Headers = map[string]string{outbox.HeaderCorrelationID: "from-event"}
	in := []outbox.Event{valid(), withHeader}
	out, err := outbox.Prepare(ctx, outbox.Limits{}, in)
	require.NoError(t, err)
	require.Equal(t, "from-ctx", out[0].Headers[outbox.HeaderCorrelationID])
	require.Equal(t, "from-event", out[1].Headers[outbox.HeaderCorrelationID])
	require.Nil(t, in[0].Headers, "the caller's events are not modified")
}

func TestValidTopic(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"a": true, "batch.spellcheck.initiated.v1": true, "A_b-C.9": true, strings.Repeat("x", 249): true,
		"": false, ".": false, "..": false, "a/b": false, "ü": false, strings.Repeat("x", 250): false,
	} {
		require.Equal(t, want, outbox.ValidTopic(name), name)
	}
}

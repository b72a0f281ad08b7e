package outbox_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
)

type spellcheckInitiated struct {
	BatchID  string   `json:"batch_id"`
	EssayIDs []string `json:"essay_ids"`
}

// What a Python service publishes: EventEnvelope.model_dump(mode="json"),
// with pydantic's UTC timestamp and metadata left null.
const pythonEnvelope = `{"event_id": "8f14e45f-ceea-467a-9575-a1f6a2b5c1d3", "event_type": "huleedu.batch.spellcheck.initiated.v1", "event_timestamp": "2025-07-14T09:26:53.589793Z", "source_service": "batch_orchestrator_service", "schema_version": 1, "correlation_id": "0b5e7c39-6c4f-4a43-9d8c-5f8ee7c1a4f2", "data_schema_uri": null, "data": {"batch_id": "b-1", "essay_ids": ["e-1", "e-2"]}, "metadata": null}`

func TestDecodePythonEnvelope(t *testing.T) {
	t.Parallel()
	env, err := outbox.DecodeEnvelope[spellcheckInitiated]([]byte(pythonEnvelope))
	require.NoError(t, err)
	require.Equal(t, uuid.MustParse("8f14e45f-ceea-467a-9575-a1f6a2b5c1d3"), env.EventID)
	require.Equal(t, "huleedu.batch.spellcheck.initiated.v1", env.EventType)
	require.Equal(t, time.Date(2025, 7, 14, 9, 26, 53, 589793000, time.UTC), env.EventTimestamp.UTC())
	require.Equal(t, "batch_orchestrator_service", env.SourceService)
	require.Equal(t, 1, env.SchemaVersion)
	require.Equal(t, "0b5e7c39-6c4f-4a43-9d8c-5f8ee7c1a4f2", env.CorrelationID)
	require.Equal(t, spellcheckInitiated{"b-1", []string{"e-1", "e-2"}}, env.Data)
	require.Nil(t, env.Metadata)

	// The offset form of isoformat() decodes too.
	offset := `{"event_id":"8f14e45f-ceea-467a-9575-a1f6a2b5c1d3","event_timestamp":"2025-07-14T09:26:53.589793+00:00","data":{}}`
	_, err = outbox.DecodeEnvelope[map[string]any]([]byte(offset))
	require.NoError(t, err)
}

// What Go publishes has every field a Python EventEnvelope requires, with the
// same names and JSON types.
func TestEnvelopeEventForPython(t *testing.T) {
	t.Parallel()
	env := outbox.Envelope[spellcheckInitiated]{
		EventType: "huleedu.batch.spellcheck.initiated.v1", SourceService: "batch_orchestrator_service",
		CorrelationID: "corr-7", Data: spellcheckInitiated{"b-1", []string{"e-1"}},
	}
	e, err := env.Event("huleedu.batch.spellcheck.initiated.v1", "batch", "b-1")
	require.NoError(t, err)
	require.Equal(t, "b-1", e.Key)
	require.Equal(t, "corr-7", e.Headers[outbox.HeaderCorrelationID])
	require.Equal(t, env.EventType, e.EventType)

	var wire map[string]any
	require.NoError(t, json.Unmarshal(e.Payload, &wire))
	for _, k := range []string{"event_id", "event_type", "event_timestamp", "source_service", "schema_version", "correlation_id", "data", "metadata"} {
		require.Contains(t, wire, k)
	}
	require.Equal(t, e.ID.String(), wire["event_id"])
	require.Equal(t, float64(1), wire["schema_version"], "schema_version defaults to 1")
	ts, err := time.Parse(time.RFC3339Nano, wire["event_timestamp"].(string))
	require.NoError(t, err)
	require.WithinDuration(t, time.Now(), ts, time.Minute)
	back, err := outbox.DecodeEnvelope[spellcheckInitiated](e.Payload)
	require.NoError(t, err)
	require.Equal(t, env.Data, back.Data)
}

// pydantic v2's model_dump(mode="json") writes a datetime without tzinfo with
// no offset at all, a UTC one with "Z" and any other with its offset; the
// fraction has 6 digits and is left out when zero. A naive timestamp is UTC.
func TestDecodeEnvelopeTimestamps(t *testing.T) {
	t.Parallel()
	want := time.Date(2026, 11, 26, 10, 0, 0, 123456000, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"2026-11-26T10:00:00.123456", want},
		{"2026-11-26T10:00:00", want.Truncate(time.Second)},
		{"2026-11-26T10:00:00.123456Z", want},
		{"2026-11-26T10:00:00Z", want.Truncate(time.Second)},
		{"2026-11-26T12:00:00.123456+02:00", want},
		{"2026-11-26T04:30:00.123456-05:30", want},
		{"2026-11-26T10:00:00.123456+00:00", want},
	} {
		t.Run(tc.in, func(t *testing.T) {
			payload := `{"event_id":"8f14e45f-ceea-467a-9575-a1f6a2b5c1d3","event_timestamp":"` + tc.in + `","data":{}}`
			env, err := outbox.DecodeEnvelope[map[string]any]([]byte(payload))
			require.NoError(t, err)
			require.True(t, tc.want.Equal(env.EventTimestamp), "got %v", env.EventTimestamp)
		})
	}
	for _, bad := range []string{`"26/11/2026"`, `"2026-11-26T10:00:00+0200x"`, `12`} {
		_, err := outbox.DecodeEnvelope[map[string]any]([]byte(`{"event_timestamp":` + bad + `}`))
		require.Error(t, err, bad)
	}
}

// A Go envelope's timestamp has at most microseconds, as Python's datetime:
// pydantic drops further digits, and datetime.fromisoformat before Python
// 3.11 refuses them.
func TestEnvelopeTimestampMicroseconds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{time.Date(2026, 11, 26, 10, 0, 0, 123456789, time.UTC), "2026-11-26T10:00:00.123456Z"},
		{time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC), "2026-11-26T10:00:00Z"},
		{time.Date(2026, 11, 26, 12, 0, 0, 5000, time.FixedZone("", 2*3600)), "2026-11-26T12:00:00.000005+02:00"},
	} {
		e, err := outbox.Envelope[map[string]int]{EventType: "t.v1", EventTimestamp: tc.at, Data: map[string]int{}}.Event("t", "a", "1")
		require.NoError(t, err)
		var wire struct {
			EventTimestamp string `json:"event_timestamp"`
		}
		require.NoError(t, json.Unmarshal(e.Payload, &wire))
		require.Equal(t, tc.want, wire.EventTimestamp)
		back, err := outbox.DecodeEnvelope[map[string]int](e.Payload)
		require.NoError(t, err)
		require.True(t, tc.at.Truncate(time.Microsecond).Equal(back.EventTimestamp))
	}
}

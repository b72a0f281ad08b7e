package compat_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
)

// batchSpellcheck is the payload of the suite's envelopes; compat/python
// has it as BatchSpellcheckInitiated.
type batchSpellcheck struct {
	BatchID  string   `json:"batch_id"`
	EssayIDs []string `json:"essay_ids"`
}

type envelope = outbox.Envelope[batchSpellcheck]

var (
	eventID       = uuid.MustParse("8f14e45f-ceea-467a-9575-a1f6a2b5c1d3")
	correlationID = uuid.MustParse("0b5e7c39-6c4f-4a43-9d8c-5f8ee7c1a4f2")
	// at is the instant of most cases: 10:00:00.123456 UTC.
	at = time.Date(2026, 11, 26, 10, 0, 0, 123456000, time.UTC)
)

// pydanticResult is one answer of compat.py validate.
type pydanticResult struct {
	Envelope json.RawMessage `json:"envelope"`
	Error    string          `json:"error"`
}

// validate returns pydantic's verdict on each envelope text.
func validate(t *testing.T, texts ...string) []pydanticResult {
	t.Helper()
	var out []pydanticResult
	runPython(t, texts, &out, "validate")
	require.Len(t, out, len(texts))
	return out
}

// requireSame checks that got carries want's ID, instant, correlation ID,
// data and metadata. Correlation IDs compare as UUIDs: pydantic writes them
// in lower case whatever it read.
func requireSame(t *testing.T, want, got envelope) {
	t.Helper()
	require.Equal(t, want.EventID, got.EventID)
	require.True(t, want.EventTimestamp.Equal(got.EventTimestamp), "timestamp: want %v, got %v", want.EventTimestamp, got.EventTimestamp)
	require.Equal(t, uuid.MustParse(want.CorrelationID), uuid.MustParse(got.CorrelationID))
	require.Equal(t, want.EventType, got.EventType)
	require.Equal(t, want.SourceService, got.SourceService)
	require.Equal(t, want.SchemaVersion, got.SchemaVersion)
	require.Equal(t, want.Data, got.Data)
	require.Equal(t, want.Metadata, got.Metadata)
}

func decode(t *testing.T, text []byte) envelope {
	t.Helper()
	env, err := outbox.DecodeEnvelope[batchSpellcheck](text)
	require.NoError(t, err, "%s", text)
	return env
}

// Envelopes written by Envelope.Event validate with the services'
// EventEnvelope, and pydantic reads the same values from them.
func TestPydanticValidatesGoEnvelopes(t *testing.T) {
	t.Parallel()
	base := envelope{
		EventType: "huleedu.batch.spellcheck.initiated.v1", SourceService: "batch_orchestrator_service",
		Data: batchSpellcheck{"b-1", []string{"e-1", "e-2"}},
	}
	with := func(f func(*envelope)) envelope { e := base; f(&e); return e }
	cases := map[string]envelope{
		"defaults (new IDs, now)": base,
		"nanoseconds":             with(func(e *envelope) { e.EventTimestamp = at.Add(789) }),
		"offset":                  with(func(e *envelope) { e.EventTimestamp = at.In(time.FixedZone("", -(5*3600 + 1800))) }),
		"local zone":              with(func(e *envelope) { e.EventTimestamp = at.Local() }),
		"metadata empty":          with(func(e *envelope) { e.Metadata = map[string]any{} }),
		"metadata":                with(func(e *envelope) { e.Metadata = map[string]any{"trace_id": "abc", "attempt": 2.0} }),
		"uppercase correlation":   with(func(e *envelope) { e.CorrelationID = strings.ToUpper(correlationID.String()) }),
		"schema version 2":        with(func(e *envelope) { e.SchemaVersion = 2; e.EventID = eventID }),
		"no essays":               with(func(e *envelope) { e.Data.EssayIDs = []string{} }),
	}
	var names, texts []string
	for name, env := range cases {
		e, err := env.Event("huleedu.batch.spellcheck.initiated.v1", "batch", "b-1")
		require.NoError(t, err)
		names, texts = append(names, name), append(texts, string(e.Payload))
	}
	for i, res := range validate(t, texts...) {
		t.Run(names[i], func(t *testing.T) {
			require.Empty(t, res.Error, "pydantic refused %s", texts[i])
			requireSame(t, decode(t, []byte(texts[i])), decode(t, res.Envelope))
		})
	}
}

// The Python model types correlation_id as a UUID: a Go envelope with any
// other correlation ID is refused, as the Envelope documentation says.
func TestPydanticRefusesNonUUIDCorrelationID(t *testing.T) {
	t.Parallel()
	e, err := envelope{EventType: "t.v1", CorrelationID: "req-7", Data: batchSpellcheck{BatchID: "b"}}.Event("t", "batch", "b")
	require.NoError(t, err)
	res := validate(t, string(e.Payload))[0]
	require.Contains(t, res.Error, "correlation_id")
}

// What the services' EventEnvelope writes with model_dump(mode="json") for
// Python values, and what DecodeEnvelope reads from it. A datetime without
// tzinfo (datetime.utcnow(), for instance) is written with no offset and
// read as UTC.
func TestGoDecodesPydanticEnvelopes(t *testing.T) {
	t.Parallel()
	plus2, minus530 := time.FixedZone("", 2*3600), time.FixedZone("", -(5*3600+1800))
	cases := []struct {
		name string
		// fields is what the Python side builds the envelope from: the
		// timestamp through datetime.fromisoformat, IDs through UUID.
		fields map[string]any
		// wire is the event_timestamp pydantic writes.
		wire string
		want envelope
	}{
		{"naive", map[string]any{"event_timestamp": "2026-11-26T10:00:00.123456"},
			"2026-11-26T10:00:00.123456", envelope{EventTimestamp: at}},
		{"naive whole second", map[string]any{"event_timestamp": "2026-11-26T10:00:00"},
			"2026-11-26T10:00:00", envelope{EventTimestamp: at.Truncate(time.Second)}},
		{"naive milliseconds", map[string]any{"event_timestamp": "2026-11-26T10:00:00.120"},
			"2026-11-26T10:00:00.120000", envelope{EventTimestamp: at.Truncate(10 * time.Millisecond)}},
		{"UTC", map[string]any{"event_timestamp": "2026-11-26T10:00:00.123456+00:00"},
			"2026-11-26T10:00:00.123456Z", envelope{EventTimestamp: at}},
		{"offset", map[string]any{"event_timestamp": "2026-11-26T12:00:00.123456+02:00"},
			"2026-11-26T12:00:00.123456+02:00", envelope{EventTimestamp: at.In(plus2)}},
		{"negative offset", map[string]any{"event_timestamp": "2026-11-26T04:30:00-05:30"},
			"2026-11-26T04:30:00-05:30", envelope{EventTimestamp: at.Truncate(time.Second).In(minus530)}},
		{"metadata empty", map[string]any{"event_timestamp": "2026-11-26T10:00:00.123456", "metadata": map[string]any{}},
			"2026-11-26T10:00:00.123456", envelope{EventTimestamp: at, Metadata: map[string]any{}}},
		{"metadata", map[string]any{"event_timestamp": "2026-11-26T10:00:00.123456", "metadata": map[string]any{"user_id": "u-1", "retries": 1}},
			"2026-11-26T10:00:00.123456", envelope{EventTimestamp: at, Metadata: map[string]any{"user_id": "u-1", "retries": 1.0}}},
		{"metadata null", map[string]any{"event_timestamp": "2026-11-26T10:00:00.123456", "metadata": nil},
			"2026-11-26T10:00:00.123456", envelope{EventTimestamp: at}},
	}
	var fields []map[string]any
	for _, tc := range cases {
		f := map[string]any{
			"event_id":       strings.ToUpper(eventID.String()), // Python's UUID writes lower case
			"event_type":     "huleedu.batch.spellcheck.initiated.v1",
			"source_service": "batch_orchestrator_service",
			"correlation_id": correlationID.String(),
			"data":           map[string]any{"batch_id": "b-1", "essay_ids": []string{"e-1"}},
		}
		for k, v := range tc.fields {
			f[k] = v
		}
		fields = append(fields, f)
	}
	var texts []string
	runPython(t, fields, &texts, "dump")
	require.Len(t, texts, len(cases))
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var wire struct {
				EventTimestamp string `json:"event_timestamp"`
			}
			require.NoError(t, json.Unmarshal([]byte(texts[i]), &wire))
			require.Equal(t, tc.wire, wire.EventTimestamp, "pydantic's timestamp")
			want := tc.want
			want.EventID, want.CorrelationID, want.SchemaVersion = eventID, correlationID.String(), 1
			want.EventType, want.SourceService = "huleedu.batch.spellcheck.initiated.v1", "batch_orchestrator_service"
			want.Data = batchSpellcheck{"b-1", []string{"e-1"}}
			got := decode(t, []byte(texts[i]))
			requireSame(t, want, got)
			_, wantOffset := want.EventTimestamp.Zone()
			_, gotOffset := got.EventTimestamp.Zone()
			require.Equal(t, wantOffset, gotOffset, "a naive timestamp is UTC, others keep their offset")
		})
	}
}

// Envelopes as other writers may send them, which both sides read alike:
// metadata absent, null or empty, fields neither model has, upper-case UUIDs.
func TestEnvelopeVectors(t *testing.T) {
	t.Parallel()
	const common = `"event_type": "huleedu.batch.spellcheck.initiated.v1", "source_service": "batch_orchestrator_service", "schema_version": 1`
	want := envelope{
		EventID: eventID, EventTimestamp: at, CorrelationID: correlationID.String(), SchemaVersion: 1,
		EventType: "huleedu.batch.spellcheck.initiated.v1", SourceService: "batch_orchestrator_service",
		Data: batchSpellcheck{"b-1", []string{"e-1"}},
	}
	vectors := []struct {
		name, text string
		metadata   map[string]any
	}{
		{"metadata absent", `{"event_id": "8f14e45f-ceea-467a-9575-a1f6a2b5c1d3", "event_timestamp": "2026-11-26T10:00:00.123456", ` + common +
			`, "correlation_id": "0b5e7c39-6c4f-4a43-9d8c-5f8ee7c1a4f2", "data": {"batch_id": "b-1", "essay_ids": ["e-1"]}}`, nil},
		{"metadata null", `{"event_id": "8f14e45f-ceea-467a-9575-a1f6a2b5c1d3", "event_timestamp": "2026-11-26T10:00:00.123456Z", ` + common +
			`, "correlation_id": "0b5e7c39-6c4f-4a43-9d8c-5f8ee7c1a4f2", "data": {"batch_id": "b-1", "essay_ids": ["e-1"]}, "metadata": null}`, nil},
		{"metadata empty", `{"event_id": "8f14e45f-ceea-467a-9575-a1f6a2b5c1d3", "event_timestamp": "2026-11-26T11:00:00.123456+01:00", ` + common +
			`, "correlation_id": "0b5e7c39-6c4f-4a43-9d8c-5f8ee7c1a4f2", "data": {"batch_id": "b-1", "essay_ids": ["e-1"]}, "metadata": {}}`, map[string]any{}},
		{"extra fields", `{"event_id": "8f14e45f-ceea-467a-9575-a1f6a2b5c1d3", "event_timestamp": "2026-11-26T10:00:00.123456", ` + common +
			`, "correlation_id": "0b5e7c39-6c4f-4a43-9d8c-5f8ee7c1a4f2", "data_schema_uri": "https://schemas.example/spellcheck/v1", "topic": "huleedu.batch.spellcheck.initiated.v1"` +
			`, "data": {"batch_id": "b-1", "essay_ids": ["e-1"], "priority": "high"}, "metadata": {"trace": {"id": [1, 2]}}, "unknown": {"nested": true}}`,
			map[string]any{"trace": map[string]any{"id": []any{1.0, 2.0}}}},
		{"upper-case UUIDs", `{"event_id": "8F14E45F-CEEA-467A-9575-A1F6A2B5C1D3", "event_timestamp": "2026-11-26T10:00:00.123456", ` + common +
			`, "correlation_id": "0B5E7C39-6C4F-4A43-9D8C-5F8EE7C1A4F2", "data": {"batch_id": "b-1", "essay_ids": ["e-1"]}, "metadata": null}`, nil},
	}
	var texts []string
	for _, v := range vectors {
		texts = append(texts, v.text)
	}
	results := validate(t, texts...)
	for i, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			w := want
			w.Metadata = v.metadata
			requireSame(t, w, decode(t, []byte(v.text)))
			require.Empty(t, results[i].Error, "pydantic refused it")
			requireSame(t, w, decode(t, results[i].Envelope))
		})
	}
}

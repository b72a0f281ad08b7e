package otel_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker/wmbroker"
	"github.com/outboxkit/outbox/internal/testenv"
	outboxotel "github.com/outboxkit/outbox/otel"
	"github.com/outboxkit/outbox/store/postgres"
)

var (
	errBusy     = errors.New("broker busy")
	errRejected = errors.New("message rejected")
)

// failingPublisher fails the messages with chosen UUIDs: errBusy is
// transient, errRejected is classified permanent by classifyRejected.
type failingPublisher struct {
	message.Publisher
	busy, rejected map[string]bool
}

func (p failingPublisher) Publish(topic string, msgs ...*message.Message) error {
	for _, m := range msgs {
		switch {
		case p.rejected[m.UUID]:
			return errRejected
		case p.busy[m.UUID]:
			return errBusy
		}
	}
	return p.Publisher.Publish(topic, msgs...)
}

// classifyRejected makes a rejection permanent and a busy broker's error an
// unknown outcome: it may have appended the message before it answered.
func classifyRejected(err error) error {
	switch {
	case errors.Is(err, errRejected):
		return fmt.Errorf("%w: %w", outbox.ErrPermanent, err)
	case errors.Is(err, errBusy):
		return fmt.Errorf("%w: %w", outbox.ErrUnknownOutcome, err)
	}
	return err
}

// TestMetrics publishes, fails and parks chosen events and checks that the
// relay's and the table's metrics report exactly that.
func TestMetrics(t *testing.T) {
	t.Parallel()
	rec, _, opts := newTracing(t)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	opts = append(opts, outboxotel.WithMeterProvider(mp))

	st := testenv.PostgresStore(t, postgres.Config{})
	unregister, err := outboxotel.RegisterStoreMetrics(st, opts...)
	require.NoError(t, err)

	event := func(topic, key string) outbox.Event {
		return outbox.Event{ID: outbox.NewID(), Topic: topic, Key: key, EventType: "test.v1", Payload: []byte(`{}`)}
	}
	busy, rejected := event("orders", "o4"), event("orders", "o5")
	events := []outbox.Event{
		event("orders", "o1"), event("orders", "o2"), event("orders", "o3"), busy, rejected,
		event("invoices", "i1"), event("invoices", "i2"),
	}
	pub := failingPublisher{
		Publisher: newGoChannel(t),
		busy:      map[string]bool{busy.ID.String(): true},
		rejected:  map[string]bool{rejected.ID.String(): true},
	}
	stop := runRelay(t, st, wmbroker.New(pub, wmbroker.WithClassifier(classifyRejected)), outboxotel.NewRelayTracer(opts...))
	write(t, context.Background(), st, events...)

	require.Eventually(t, func() bool {
		m := collect(t, reader)
		return m.sum("outbox.relay.published", "orders") == 3 && m.sum("outbox.relay.published", "invoices") == 2 &&
			m.sum("outbox.relay.failed", "orders") == 1 && m.sum("outbox.relay.parked", "orders") == 1
	}, 10*time.Second, 10*time.Millisecond)
	stop()

	// After the relay stopped nothing more comes: the values are exact.
	m := collect(t, reader)
	for _, c := range []struct {
		name, topic string
		want        int64
	}{
		{"outbox.relay.published", "orders", 3}, {"outbox.relay.published", "invoices", 2},
		{"outbox.relay.failed", "orders", 1}, {"outbox.relay.failed", "invoices", 0},
		{"outbox.relay.parked", "orders", 1}, {"outbox.relay.parked", "invoices", 0},
		{"outbox.relay.released", "orders", 0},
		// The busy broker's failure is an unknown outcome: its retry may duplicate it.
		{"outbox.relay.possible_duplicates", "orders", 1}, {"outbox.relay.possible_duplicates", "invoices", 0},
	} {
		require.Equal(t, c.want, m.sum(c.name, c.topic), "%s{%s}", c.name, c.topic)
	}
	for _, c := range []struct {
		name, topic string
		count       uint64
		sum         float64
	}{
		{"outbox.relay.batch.size", "orders", 1, 5}, {"outbox.relay.batch.size", "invoices", 1, 2},
		{"outbox.relay.publish.duration", "orders", 1, -1}, {"outbox.relay.lag", "orders", 3, -1},
		{"outbox.relay.lag", "invoices", 2, -1},
	} {
		count, sum := m.histogram(c.name, c.topic)
		require.Equal(t, c.count, count, "%s{%s} count", c.name, c.topic)
		if c.sum >= 0 {
			require.Equal(t, c.sum, sum, "%s{%s} sum", c.name, c.topic)
		} else {
			require.Positive(t, sum, "%s{%s} sum", c.name, c.topic)
		}
	}
	// The busy event waits for its retry; the rejected one is parked.
	table := attribute.NewSet(attribute.String("outbox.table", st.Table()))
	require.Equal(t, 1.0, m.gauge("outbox.table.pending", table))
	require.Equal(t, 1.0, m.gauge("outbox.table.parked", table))
	require.Positive(t, m.gauge("outbox.table.oldest_pending_age", table))

	publish := spanNamed(t, rec, "publish orders")
	require.Equal(t, codes.Error, publish.Status().Code)
	require.Contains(t, publish.Status().Description, "2 of 5 messages not published")
	requireAttrs(t, publish, attribute.String("error.type", "transient"))

	require.NoError(t, unregister())
	_, ok := collect(t, reader).find("outbox.table.pending")
	require.False(t, ok, "gauges reported after unregister")
}

type metrics struct {
	t  *testing.T
	rm metricdata.ResourceMetrics
}

func collect(t *testing.T, r *sdkmetric.ManualReader) metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.Collect(context.Background(), &rm))
	return metrics{t, rm}
}

func (m metrics) find(name string) (metricdata.Aggregation, bool) {
	for _, sm := range m.rm.ScopeMetrics {
		for _, mm := range sm.Metrics {
			if mm.Name == name {
				require.Equal(m.t, outboxotel.ScopeName, sm.Scope.Name)
				return mm.Data, true
			}
		}
	}
	return nil, false
}

func topicSet(topic string) attribute.Set {
	return attribute.NewSet(attribute.String("messaging.destination.name", topic))
}

// sum returns a counter's value for topic, -1 when it has none.
func (m metrics) sum(name, topic string) int64 {
	data, ok := m.find(name)
	if !ok {
		return -1
	}
	for _, dp := range data.(metricdata.Sum[int64]).DataPoints {
		if dp.Attributes.Equals(ptr(topicSet(topic))) {
			return dp.Value
		}
	}
	return -1
}

func (m metrics) histogram(name, topic string) (count uint64, sum float64) {
	data, ok := m.find(name)
	require.True(m.t, ok, "no metric %s", name)
	switch h := data.(type) {
	case metricdata.Histogram[float64]:
		for _, dp := range h.DataPoints {
			if dp.Attributes.Equals(ptr(topicSet(topic))) {
				return dp.Count, dp.Sum
			}
		}
	case metricdata.Histogram[int64]:
		for _, dp := range h.DataPoints {
			if dp.Attributes.Equals(ptr(topicSet(topic))) {
				return dp.Count, float64(dp.Sum)
			}
		}
	}
	return 0, 0
}

func (m metrics) gauge(name string, attrs attribute.Set) float64 {
	data, ok := m.find(name)
	require.True(m.t, ok, "no metric %s", name)
	switch g := data.(type) {
	case metricdata.Gauge[int64]:
		for _, dp := range g.DataPoints {
			if dp.Attributes.Equals(&attrs) {
				return float64(dp.Value)
			}
		}
	case metricdata.Gauge[float64]:
		for _, dp := range g.DataPoints {
			if dp.Attributes.Equals(&attrs) {
				return dp.Value
			}
		}
	}
	m.t.Fatalf("no %s data point with %v", name, attrs)
	return 0
}

func ptr[T any](v T) *T { return &v }

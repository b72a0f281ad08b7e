package otel

import (
	"context"
	"errors"
	"fmt"

	global "go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/store"
)

// Histogram boundaries. Publishing takes milliseconds to seconds; the lag
// also covers backlogs of minutes to an hour after an outage.
var (
	durationBuckets  = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
	lagBuckets       = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}
	batchSizeBuckets = []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000}
)

type relayMetrics struct {
	published, failed, released, parked, duplicates metric.Int64Counter
	duration, lag                                   metric.Float64Histogram
	batchSize                                       metric.Int64Histogram
}

func newRelayMetrics(m metric.Meter) relayMetrics {
	var rm relayMetrics
	var errs []error
	counter := func(name, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithUnit("{event}"), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	rm.published = counter("outbox.relay.published", "Events accepted by the broker and marked published.")
	rm.failed = counter("outbox.relay.failed", "Failed publish attempts scheduled for a retry.")
	rm.released = counter("outbox.relay.released", "Events put back without counting an attempt (broker unreachable, skipped, shutdown).")
	rm.parked = counter("outbox.relay.parked", "Events given up on: permanent error or attempts used up.")
	rm.duplicates = counter("outbox.relay.possible_duplicates", "Events published that another relay may have published too.")
	var err error
	rm.duration, err = m.Float64Histogram("outbox.relay.publish.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of one broker call for the events of a topic in a batch."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	errs = append(errs, err)
	rm.lag, err = m.Float64Histogram("outbox.relay.lag", metric.WithUnit("s"),
		metric.WithDescription("Time from an event's commit (database clock) to its publication."),
		metric.WithExplicitBucketBoundaries(lagBuckets...))
	errs = append(errs, err)
	rm.batchSize, err = m.Int64Histogram("outbox.relay.batch.size", metric.WithUnit("{event}"),
		metric.WithDescription("Events of a topic in one claimed batch."),
		metric.WithExplicitBucketBoundaries(batchSizeBuckets...))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		global.Handle(fmt.Errorf("outboxotel: relay metrics: %w", err))
	}
	return rm
}

func (rm relayMetrics) settle(ctx context.Context, d outbox.TraceSettleData) {
	topic := metric.WithAttributeSet(attribute.NewSet(semconv.MessagingDestinationName(d.Topic)))
	for _, c := range []struct {
		counter metric.Int64Counter
		n       int
	}{
		{rm.published, d.Published}, {rm.failed, d.Failed}, {rm.released, d.Released},
		{rm.parked, d.Parked}, {rm.duplicates, d.PossibleDuplicates},
	} {
		// Zeros too: a series that exists from the first batch on lets
		// rate() and alerts work before the first failure.
		c.counter.Add(ctx, int64(c.n), topic)
	}
	rm.batchSize.Record(ctx, int64(d.BatchSize), topic)
	for _, lag := range d.Lags {
		rm.lag.Record(ctx, lag.Seconds(), topic)
	}
}

// RegisterStoreMetrics reports the backlog of st as observable gauges:
// outbox.table.pending, outbox.table.oldest_pending_age and
// outbox.table.parked. When st has a Table() string method (the stores of
// this module do), the gauges carry it as the attribute outbox.table, so
// several tables can be reported side by side. Each collection runs one
// Stats query, so the collection interval is the query rate.
//
// It uses [WithMeterProvider]. The returned function unregisters the gauges.
func RegisterStoreMetrics(st store.Store, opts ...Option) (unregister func() error, err error) {
	m := newConfig(opts).meter()
	pending, err1 := m.Int64ObservableGauge("outbox.table.pending", metric.WithUnit("{event}"),
		metric.WithDescription("Events neither published nor parked."))
	age, err2 := m.Float64ObservableGauge("outbox.table.oldest_pending_age", metric.WithUnit("s"),
		metric.WithDescription("Age of the oldest pending event by the database clock; 0 when none is pending."))
	parked, err3 := m.Int64ObservableGauge("outbox.table.parked", metric.WithUnit("{event}"),
		metric.WithDescription("Parked events, waiting for an operator."))
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, fmt.Errorf("outboxotel: store metrics: %w", err)
	}
	var attrs []metric.ObserveOption
	if t, ok := st.(interface{ Table() string }); ok {
		attrs = append(attrs, metric.WithAttributeSet(attribute.NewSet(attribute.String("outbox.table", t.Table()))))
	}
	reg, err := m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		s, err := st.Stats(ctx)
		if err != nil {
			return fmt.Errorf("outboxotel: store stats: %w", err)
		}
		o.ObserveInt64(pending, s.Pending, attrs...)
		o.ObserveFloat64(age, s.OldestPendingAge.Seconds(), attrs...)
		o.ObserveInt64(parked, s.Parked, attrs...)
		return nil
	}, pending, age, parked)
	if err != nil {
		return nil, fmt.Errorf("outboxotel: store metrics: %w", err)
	}
	return reg.Unregister, nil
}

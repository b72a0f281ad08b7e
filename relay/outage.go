package relay

import "time"

// outage is a broker outage: the batches in a row that found the broker
// unreachable, from the first one on.
type outage struct {
	trips    int // batches in a row that found the broker unreachable
	began    time.Time
	released int // events put back, once per claim, since it began
}

// brokerDown records that a batch of count events of topic found the broker
// unreachable with err, and returns the circuit breaker's pause before the
// next claim. The first such batch begins an outage, which is logged with
// its reason.
func (r *Relay) brokerDown(topic string, count int, err error) time.Duration {
	o := &r.outage
	o.trips++
	pause := backoff(r.cfg.ErrorRetryInterval, min(maxPause, r.cfg.MaxBackoff), o.trips)
	if o.trips == 1 {
		o.began = time.Now()
		r.cfg.Logger.Warn("relay: broker outage began; events are released without counting an attempt",
			"topic", topic, "count", count, "err", err, "retry_in", pause)
	} else {
		r.cfg.Logger.Debug("relay: broker still unreachable, events released", "topic", topic, "count", count, "err", err, "retry_in", pause)
	}
	return pause
}

// brokerUp records that a batch reached the broker, which ends an outage.
func (r *Relay) brokerUp() {
	o := &r.outage
	if o.trips > 0 {
		r.cfg.Logger.Info("relay: broker outage ended", "duration", time.Since(o.began).Round(time.Millisecond),
			"released", o.released, "batches", o.trips)
	}
	*o = outage{}
}

// count adds the events that a batch which met the outage put back.
func (o *outage) count(settlements []settlement) {
	for _, s := range settlements {
		o.released += len(s.o.released) + len(s.o.delayed)
	}
}

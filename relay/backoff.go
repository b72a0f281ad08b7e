package relay

import (
	"math/rand/v2"
	"time"
)

// backoff returns the delay before attempt n+1 after n failures (n >= 1):
// base·2^(n-1), capped at limit, with ±20% jitter so that events that failed
// together do not retry together.
func backoff(base, limit time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/relay"
	"github.com/outboxkit/outbox/relay/relaytest"
	"github.com/outboxkit/outbox/store/postgres"
)

// failing fails every message with err once, then accepts.
type failing struct {
	mu   sync.Mutex
	err  error
	seen map[string]bool
}

func (f *failing) Publish(_ context.Context, msgs []*outbox.Message) []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	for i, m := range msgs {
		if f.seen[m.ID.String()] {
			continue
		}
		f.seen[m.ID.String()] = true
		if errs == nil {
			errs = make([]error, len(msgs))
		}
		errs[i] = f.err
	}
	return errs
}

// Only a failure whose outcome is unknown counts as a possible duplicate: a
// transient, unreachable, permanent or skipped one was not appended.
func TestPossibleDuplicatesCountUnknownOutcomes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		dups int64
	}{
		{errors.New("transient"), 0},
		{fmt.Errorf("%w: connection refused", outbox.ErrUnreachable), 0},
		{fmt.Errorf("%w: too large", outbox.ErrPermanent), 0},
		{fmt.Errorf("%w: ack lost", outbox.ErrUnknownOutcome), 3},
		{fmt.Errorf("%w: %w: timeout", outbox.ErrUnreachable, outbox.ErrUnknownOutcome), 3},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			t.Parallel()
			st := testenv.PostgresStore(t, postgres.Config{})
			pub := &failing{err: tc.err, seen: map[string]bool{}}
			r, _ := relaytest.Start(t, st, pub, relaytest.FastConfig())
			ctx := context.Background()
			tx, err := st.Pool().Begin(ctx)
			require.NoError(t, err)
			require.NoError(t, st.AddTx(ctx, tx, relaytest.Event("a", 0), relaytest.Event("b", 0), relaytest.Event("c", 0)))
			require.NoError(t, tx.Commit(ctx))
			relaytest.Eventually(t, 10*time.Second, "all settled", func() bool {
				s := r.Stats()
				return s.Published+s.Parked == 3
			})
			require.Equal(t, tc.dups, r.Stats().PossibleDuplicates)
		})
	}
}

// statsAtEnd records the relay's duplicate count and the events' retry
// counts when TracePublishEnd runs.
type statsAtEnd struct {
	r       *relay.Relay
	count   func() int64
	mu      sync.Mutex
	dups    []int64
	retried []int64
}

func (s *statsAtEnd) TracePublishStart(ctx context.Context, _ outbox.TracePublishStartData) context.Context {
	return ctx
}

func (s *statsAtEnd) TracePublishEnd(context.Context, outbox.TracePublishEndData) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dups = append(s.dups, s.r.Stats().PossibleDuplicates)
	s.retried = append(s.retried, s.count())
}

// The count of unknown outcomes is in Stats when TracePublishEnd runs,
// before the outcome is recorded in the store: a relay process killed right
// after the publish has reported every possible duplicate it caused.
func TestUnknownOutcomesCountedBeforeSettle(t *testing.T) {
	t.Parallel()
	st := testenv.PostgresStore(t, postgres.Config{})
	pub := &failing{err: fmt.Errorf("%w: ack lost", outbox.ErrUnknownOutcome), seen: map[string]bool{}}
	ctx := context.Background()
	tr := &statsAtEnd{count: func() int64 {
		var n int64
		require.NoError(t, st.Pool().QueryRow(ctx, "SELECT count(*) FROM "+st.Table()+" WHERE retry_count > 0").Scan(&n))
		return n
	}}
	cfg := relaytest.FastConfig()
	cfg.Tracer = tr
	r, err := relay.New(st, pub, cfg)
	require.NoError(t, err)
	tr.r = r
	tx, err := st.Pool().Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, st.AddTx(ctx, tx, relaytest.Event("a", 0), relaytest.Event("b", 0)))
	require.NoError(t, tx.Commit(ctx))
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(runCtx) }()
	relaytest.Eventually(t, 10*time.Second, "published after the retry", func() bool { return r.Stats().Published == 2 })
	cancel()
	<-done
	tr.mu.Lock()
	defer tr.mu.Unlock()
	require.Equal(t, int64(2), tr.dups[0], "counted at the end of the failed publish")
	require.Zero(t, tr.retried[0], "before the failure was recorded")
}

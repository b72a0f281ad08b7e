package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outboxkit/outbox/internal/testenv"
)

func TestUsage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		code int
		out  string // in stdout when code is 0, else in stderr
	}{
		{nil, 2, "usage: outbox <command>"},
		{[]string{"help"}, 0, "devkafka"},
		{[]string{"--help"}, 0, "commands:"},
		{[]string{"help", "devkafka"}, 0, "-partitions"},
		{[]string{"devkafka", "--help"}, 0, "-port"},
		{[]string{"devkafka", "-nope"}, 2, "flag provided but not defined"},
		{[]string{"devkafka", "extra"}, 2, "unexpected arguments"},
		{[]string{"nope"}, 2, `unknown command "nope"`},
		{[]string{"help"}, 0, "OUTBOX_DSN"},
		{[]string{"parked"}, 2, "usage: outbox parked <command>"},
		{[]string{"parked", "--help"}, 0, "retry"},
		{[]string{"help", "parked", "retry"}, 0, "-key"},
		{[]string{"migrate", "sideways"}, 2, `outbox migrate: unknown command "sideways"`},
		{[]string{"migrate", "up", "--help"}, 0, "[$OUTBOX_DSN]"},
		{[]string{"status", "--dsn", "nonsense"}, 2, "cannot tell the database from the DSN"},
		{[]string{"parked", "show", "--dsn", "postgres://x", "not-a-uuid"}, 2, `event ID "not-a-uuid"`},
		{[]string{"parked", "retry", "--dsn", "postgres://x"}, 2, "exactly one of <event-id>, --key or --all"},
		{[]string{"purge", "--dsn", "postgres://x"}, 2, "--older-than is required"},
		{[]string{"purge", "--older-than", "soon"}, 2, `invalid duration "soon"`},
		{[]string{"replay", "--dsn", "postgres://x"}, 2, "select the events"},
		{[]string{"audit", "--dsn", "postgres://x"}, 2, "--topic is required"},
		{[]string{"relay", "--log-level", "loud", "--dsn", "postgres://x"}, 2, `--log-level "loud"`},
	} {
		var stdout, stderr bytes.Buffer
		code := run(t.Context(), tc.args, &stdout, &stderr)
		require.Equal(t, tc.code, code, "%q: %s", tc.args, stderr.String())
		require.Contains(t, stdout.String()+stderr.String(), tc.out, "%q", tc.args)
	}
}

func TestDevkafka(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	var stdout, stderr testenv.Buffer
	done := make(chan int)
	go func() { done <- run(ctx, []string{"devkafka", "-port", "0", "-partitions", "2"}, &stdout, &stderr) }()

	listening := regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)`)
	var addr string
	require.Eventually(t, func() bool {
		m := listening.FindStringSubmatch(stdout.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	}, 10*time.Second, 10*time.Millisecond, "stderr: %s", stderr.String())

	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	require.NoError(t, err)
	defer cl.Close()
	pingCtx, pingCancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer pingCancel()
	require.NoError(t, cl.Ping(pingCtx))

	cancel()
	select {
	case code := <-done:
		require.Equal(t, 0, code, stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("devkafka did not stop on cancel")
	}
	require.False(t, strings.Contains(stderr.String(), "outbox devkafka:"), stderr.String())
}

// Flags marked with a variable take it from the environment; the command
// line wins.
func TestEnvironment(t *testing.T) {
	t.Setenv("OUTBOX_DSN", "nonsense")
	r := cli(t, "status")
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, "cannot tell the database from the DSN")

	r = cli(t, "status", "--dsn", "postgres://postgres@127.0.0.1:1/test?sslmode=disable")
	require.Equal(t, 1, r.code, r.stderr)
	require.Contains(t, r.stderr, "connection refused")

	t.Setenv("OUTBOX_BATCH", "many")
	r = cli(t, "relay")
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, "$OUTBOX_BATCH")
}

package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestUsage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		code int
		out  string // in stdout when code is 0, else in stderr
	}{
		{nil, 2, "usage: outbox <command>"},
		{[]string{"help"}, 0, "relay"},
		{[]string{"--help"}, 0, "commands:"},
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

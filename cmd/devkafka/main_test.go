package main

import (
	"bytes"
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outboxkit/outbox/internal/testenv"
)

// The broker serves Kafka clients until the context ends, then exits 0.
func TestDevkafka(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	var stdout, stderr testenv.Buffer
	done := make(chan int)
	go func() { done <- run(ctx, []string{"-port", "0", "-partitions", "2"}, &stdout, &stderr) }()

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
	require.Empty(t, stderr.String())
}

// Flags are checked before the broker starts.
func TestUsage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"--help"}, 0, "-partitions"},
		{[]string{"-nope"}, 2, "flag provided but not defined"},
		{[]string{"extra"}, 2, "unexpected arguments"},
	} {
		var stdout, stderr bytes.Buffer
		require.Equal(t, tc.code, run(t.Context(), tc.args, &stdout, &stderr), "%q", tc.args)
		require.Contains(t, stdout.String()+stderr.String(), tc.out, "%q", tc.args)
	}
}

package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
)

// syncBuffer lets the test read what a running command wrote so far.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

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
	var stdout, stderr syncBuffer
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

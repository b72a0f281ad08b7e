package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/internal/testenv"
)

// relayProcess is 'outbox relay' in a child process: the test binary run as
// the command (see TestMain).
type relayProcess struct {
	cmd    *exec.Cmd
	stderr *testenv.Buffer
	done   chan struct{}
}

func startRelay(t *testing.T, f *fixture, brokers string) *relayProcess {
	t.Helper()
	p := &relayProcess{stderr: &testenv.Buffer{}, done: make(chan struct{})}
	// A short lease: a claim that commits just as SIGTERM cancels it
	// stays leased by the stopped relay until the lease expires (seen in
	// about one run in four), and holds its key until then.
	p.cmd = exec.Command(os.Args[0], "relay", "--brokers", brokers, "--metrics-addr", "127.0.0.1:0",
		"--poll", "20ms", "--batch", "50", "--lease", "3s", "--log-level", "debug")
	p.cmd.Env = append(os.Environ(), childEnv+"=1", "OUTBOX_DSN="+f.dsn, "OUTBOX_TABLE="+f.table)
	p.cmd.Stdout, p.cmd.Stderr = io.Discard, p.stderr
	require.NoError(t, p.cmd.Start())
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// stop sends SIGTERM and waits for a clean exit.
func (p *relayProcess) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("relay did not stop within 20s of SIGTERM:\n%s", p.stderr)
	}
	require.Equal(t, 0, p.cmd.ProcessState.ExitCode(), p.stderr.String())
	require.Contains(t, p.stderr.String(), "relay stopped")
}

var metricsURL = regexp.MustCompile(`metrics=(http://127\.0\.0\.1:\d+)/metrics`)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// A relay process SIGTERMed while events are being written loses none of
// them: a second one publishes what the first left, and each key's order
// holds on the topic.
func TestRelaySIGTERM(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("multi-process test")
	}
	f := newFixture(t, "postgres")
	b := newBroker(t)
	topic := b.topic("orders")
	const keys, total = 10, 600

	first := startRelay(t, f, b.Addr())
	var base string
	require.Eventually(t, func() bool {
		m := metricsURL.FindStringSubmatch(first.stderr.String())
		if m != nil {
			base = m[1]
		}
		return m != nil
	}, 20*time.Second, 20*time.Millisecond, "relay did not start:\n%s", first.stderr)
	code, body := get(t, base+"/healthz")
	require.Equal(t, http.StatusOK, code, body)

	var written []outbox.Event
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range total {
			e := event(topic, fmt.Sprint("key-", i%keys), "order.updated.v1")
			f.add(t, e)
			written = append(written, e)
			time.Sleep(3 * time.Millisecond)
		}
	})
	time.Sleep(700 * time.Millisecond)
	code, body = get(t, base+"/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "outbox_table_pending")
	require.Regexp(t, `outbox_relay_published_total\{.*messaging_destination_name="`+topic+`".*\} [1-9]`, body)
	first.stop(t)

	second := startRelay(t, f, b.Addr())
	wg.Wait()
	recs := consumed(t, b.Addr(), topic, total, 30*time.Second)
	require.Eventually(t, func() bool {
		st, err := f.st.Stats(t.Context())
		return err == nil && st.Pending == 0
	}, 20*time.Second, 50*time.Millisecond)
	second.stop(t)
	require.Zero(t, f.scalar(t, "SELECT count(*) FROM {t} WHERE lease_token IS NOT NULL"), "SIGTERM released every lease")

	// Nothing lost, and each key in write order by first occurrence.
	seen := map[string]bool{}
	var order = map[string][]string{}
	for _, r := range recs {
		id := header(r, outbox.HeaderMessageUUID)
		if !seen[id] {
			seen[id] = true
			order[string(r.Key)] = append(order[string(r.Key)], id)
		}
	}
	want := map[string][]string{}
	for _, e := range written {
		require.True(t, seen[e.ID.String()], "event %s lost", e.ID)
		want[e.Key] = append(want[e.Key], e.ID.String())
	}
	require.Equal(t, want, order)
	t.Logf("%d events written, %d records on the topic", total, len(recs))
}

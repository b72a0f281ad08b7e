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

	"github.com/stretchr/testify/assert"
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

func startRelay(t *testing.T, f *fixture, brokers string, args ...string) *relayProcess {
	t.Helper()
	// A short lease: a claim that commits just as SIGTERM cancels it
	// stays with the stopped relay until its lease ends (seen in about one
	// run in four), and holds its keys until then.
	return startRelayAt(t, f.dsn, f.table, append([]string{"--brokers", brokers, "--poll", "20ms", "--batch", "50", "--lease", "3s"}, args...)...)
}

// startRelayAt starts 'outbox relay' on the table of dsn with args, metrics
// on a free port and debug logs.
func startRelayAt(t *testing.T, dsn, table string, args ...string) *relayProcess {
	t.Helper()
	p := &relayProcess{stderr: &testenv.Buffer{}, done: make(chan struct{})}
	args = append([]string{"relay", "--metrics-addr", "127.0.0.1:0", "--log-level", "debug"}, args...)
	p.cmd = exec.Command(os.Args[0], args...)
	p.cmd.Env = append(os.Environ(), childEnv+"=1", "OUTBOX_DSN="+dsn, "OUTBOX_TABLE="+table)
	p.cmd.Stdout, p.cmd.Stderr = io.Discard, p.stderr
	require.NoError(t, p.cmd.Start())
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// baseURL waits for the relay to serve its metrics and health endpoints and
// returns their base URL.
func (p *relayProcess) baseURL(t *testing.T) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m := metricsURL.FindStringSubmatch(p.stderr.String()); m != nil {
			return m[1]
		}
		select {
		case <-p.done:
			t.Fatalf("relay exited with %v:\n%s", p.cmd.ProcessState, p.stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay did not serve within 20s:\n%s", p.stderr)
		}
	}
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

// metricsURL finds the metrics address in the log, text or JSON.
var metricsURL = regexp.MustCompile(`metrics"?[=:]"?(http://127\.0\.0\.1:\d+)/metrics`)

// waitReady waits until the relay's /readyz answers 200.
func waitReady(t *testing.T, base string) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		code, body := fetch(base + "/readyz")
		assert.Equal(c, http.StatusOK, code, body)
	}, 30*time.Second, 20*time.Millisecond)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	code, body := fetch(url)
	require.NotZero(t, code, body)
	return code, body
}

// fetch GETs url and returns the status and body, or 0 and the error.
func fetch(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err.Error()
	}
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
	base := first.baseURL(t)
	waitReady(t, base)

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
	code, body := get(t, base+"/metrics")
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
	require.Zero(t, f.scalar(t, "SELECT count(*) FROM {t}_claims"), "SIGTERM settled every claim")

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

// With --delete-published the relay deletes what the broker accepted: every
// event reaches the topic, in order per key, and the table is left empty.
func TestRelayDeletePublished(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("multi-process test")
	}
	f := newFixture(t, "mysql")
	b := newBroker(t)
	topic := b.topic("orders")
	var written []outbox.Event
	for i := range 50 {
		e := event(topic, fmt.Sprint("key-", i%5), "order.updated.v1")
		f.add(t, e)
		written = append(written, e)
	}
	p := startRelay(t, f, b.Addr(), "--delete-published")
	recs := consumed(t, b.Addr(), topic, len(written), 30*time.Second)
	require.Len(t, recs, len(written))
	require.Eventually(t, func() bool { return f.scalar(t, "SELECT count(*) FROM {t}") == 0 }, 20*time.Second, 50*time.Millisecond,
		"the published events were deleted")
	p.stop(t)
	last := map[string]int{}
	index := map[string]int{}
	for i, e := range written {
		index[e.ID.String()] = i
	}
	for _, r := range recs {
		i := index[header(r, outbox.HeaderMessageUUID)]
		key := string(r.Key)
		if prev, ok := last[key]; ok {
			require.Greater(t, i, prev, "key %s out of order", key)
		}
		last[key] = i
	}
}

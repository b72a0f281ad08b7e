package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/internal/testenv"
)

// A relay started before its database and its broker does not exit: it
// serves /healthz, /readyz says which one is down and why, the log says it
// too, and once both answer the relay publishes.
func TestRelayWaitsForDependencies(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("multi-process test")
	}
	brokers := testenv.Kafka(t)
	serverDialects(t, func(t *testing.T, f *fixture) {
		topic := testenv.KafkaTopic(t, brokers, 1)
		// Neither shared server can move to another port, so a proxy on a
		// free port stands for each, unreachable until it starts. Kafka
		// clients bootstrap through it, then reach the broker at the
		// address it advertises: the events go to the real broker.
		db, kafka := newProxy(t, f.serverAddr(t)), newProxy(t, brokers[0])
		p := startRelayAt(t, f.dsnAt(t, db.addr), f.table, "--brokers", kafka.addr, "--log-format", "json")
		base := p.baseURL(t)

		code, body := get(t, base+"/healthz")
		require.Equal(t, http.StatusOK, code, body)
		requireReadiness(t, base, http.StatusServiceUnavailable,
			`(?m)^database: down: .*connection refused$`, `(?m)^broker: down: .*connection refused$`)

		db.start(t)
		requireReadiness(t, base, http.StatusServiceUnavailable, `(?m)^database: ok$`, `(?m)^broker: down: .*connection refused$`)
		kafka.start(t)
		requireReadiness(t, base, http.StatusOK, `(?m)^database: ok$`, `(?m)^broker: ok$`)

		var written []outbox.Event
		for i := range 20 {
			written = append(written, event(topic, fmt.Sprint("k", i%4), "order.updated.v1"))
		}
		f.add(t, written...)
		recs := consumed(t, brokers[0], topic, len(written), 30*time.Second)
		got := map[string]bool{}
		for _, r := range recs {
			got[header(r, outbox.HeaderMessageUUID)] = true
		}
		for _, e := range written {
			require.True(t, got[e.ID.String()], "event %s not on the topic", e.ID)
		}
		p.stop(t)

		lines := requireJSONLines(t, p.stderr.String())
		for _, dep := range []string{"database", "broker"} {
			require.True(t, logged(lines, dep+" unreachable; retrying", "connection refused"), "%s outage logged:\n%s", dep, p.stderr)
			require.True(t, logged(lines, dep+" connected", ""), "%s connected logged", dep)
		}
		require.True(t, logged(lines, "relay: published", ""), "a debug line per published batch")
	})
}

// The server closing the relay's pooled connections (pg_terminate_backend,
// KILL CONNECTION) while the database is fine makes no health request fail.
// With --log-format json, every line the process writes is JSON, also the
// MySQL driver's own and the OpenTelemetry error handler's.
func TestRelayHealthAfterKilledConnections(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("multi-process test")
	}
	brokers := testenv.Kafka(t)
	serverDialects(t, func(t *testing.T, f *fixture) {
		db := newProxy(t, f.serverAddr(t))
		db.start(t)
		// An idle relay keeps its pooled connections idle, so that the
		// requests after a kill meet the connections the server closed.
		p := startRelayAt(t, f.dsnAt(t, db.addr), f.table, "--brokers", strings.Join(brokers, ","),
			"--poll", "1h", "--log-format", "json")
		base := p.baseURL(t)
		waitReady(t, base)
		for round := range 5 {
			// A probe that succeeds leaves its connection in the pool.
			code, body := get(t, base+"/readyz")
			require.Equal(t, http.StatusOK, code, "round %d: %s", round, body)
			n := f.kill(t, db.ports())
			require.Positive(t, n, "round %d: the relay's connections", round)
			for _, path := range []string{"/healthz", "/readyz", "/readyz"} {
				code, body := get(t, base+path)
				require.Equal(t, http.StatusOK, code, "round %d, %d connections killed, %s: %s", round, n, path, body)
			}
		}
		if f.dialect == "mysql" {
			waitLogged(t, p, "closing bad idle connection")
		}

		// Without its table, collecting the table's metrics fails, which
		// the exporter reports to the OpenTelemetry error handler.
		f.exec(t, "DROP TABLE {t}")
		get(t, base+"/metrics")
		waitLogged(t, p, "outboxotel: store stats")
		p.stop(t)

		lines := requireJSONLines(t, p.stderr.String())
		require.True(t, slices.ContainsFunc(lines, func(l map[string]any) bool {
			return l["logger"] == "opentelemetry" && l["level"] == "ERROR" && strings.Contains(fmt.Sprint(l["err"]), "outboxotel: store stats")
		}), "the OpenTelemetry error handler logs through slog")
		if f.dialect == "mysql" {
			require.True(t, slices.ContainsFunc(lines, func(l map[string]any) bool {
				return l["logger"] == "mysql" && strings.Contains(fmt.Sprint(l["msg"]), "closing bad idle connection")
			}), "the MySQL driver logs through slog")
		}
	})
}

// waitLogged waits until the relay's log holds text, in whatever format.
func waitLogged(t *testing.T, p *relayProcess, text string) {
	t.Helper()
	require.Eventually(t, func() bool { return strings.Contains(p.stderr.String(), text) }, 10*time.Second,
		10*time.Millisecond, "%q never logged:\n%s", text, p.stderr)
}

// requireReadiness waits until /readyz answers code with a body that
// matches every pattern.
func requireReadiness(t *testing.T, base string, code int, patterns ...string) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		got, body := fetch(base + "/readyz")
		assert.Equal(c, code, got, body)
		for _, p := range patterns {
			assert.Regexp(c, p, body)
		}
	}, 30*time.Second, 20*time.Millisecond)
}

// requireJSONLines fails unless every line of log is a JSON object, and
// returns them.
func requireJSONLines(t *testing.T, log string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(strings.TrimSpace(log)) {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), "a line that is not JSON: %q", line)
		out = append(out, m)
	}
	require.NotEmpty(t, out)
	return out
}

// logged reports whether a line has message msg and an err containing err.
func logged(lines []map[string]any, msg, err string) bool {
	for _, l := range lines {
		if l["msg"] == msg && (err == "" || strings.Contains(fmt.Sprint(l["err"]), err)) {
			return true
		}
	}
	return false
}

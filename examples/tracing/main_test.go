package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/outboxkit/outbox/internal/testenv"
)

// The example runs end to end: the consumer's span is in the request's
// trace, the publish span is linked to it, and /metrics has the relay's
// counters.
func TestRun(t *testing.T) {
	testenv.Postgres(t) // skips (or fails under CI) without PostgreSQL
	t.Setenv("OUTBOX_KAFKA_BROKERS", strings.Join(testenv.Kafka(t), ","))
	var out testenv.Buffer
	if err := run(&out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	text := out.String()
	request := regexp.MustCompile(`POST /orders \[server\] trace=([0-9a-f]{32})`).FindStringSubmatch(text)
	if request == nil {
		t.Fatalf("no request span in:\n%s", text)
	}
	for _, want := range []string{
		`process tracing.orders \[consumer\] trace=` + request[1],
		`publish tracing.orders \[producer\] trace=[0-9a-f]{32}`,
		`linked to trace=` + request[1],
		`outbox_relay_published_total\{[^}]*messaging_destination_name="tracing.orders"[^}]*\} 1`,
		`outbox_table_pending\{`,
	} {
		if !regexp.MustCompile(want).MatchString(text) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
}

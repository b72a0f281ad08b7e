package main

import (
	"context"
	"regexp"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/internal/testenv/rabbitmq"
)

// The example runs end to end against PostgreSQL and RabbitMQ: every
// committed event arrives, each payment's in order, and no rolled-back one.
func TestRun(t *testing.T) {
	pool := testenv.Postgres(t) // skips (or fails under CI) without PostgreSQL
	u := rabbitmq.URL(t)
	t.Setenv("OUTBOX_AMQP_URL", u)
	table, topic := testenv.Table("rabbitmq"), testenv.Table("rabbitmq.payments")
	t.Setenv("OUTBOX_TABLE", table)
	t.Setenv("OUTBOX_TOPIC", topic)
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), "DROP TABLE IF EXISTS "+table)
		_, _ = pool.Exec(context.Background(), "DELETE FROM outbox_migrations WHERE table_name = $1", table)
		if conn, err := amqp.Dial(u); err == nil {
			if ch, err := conn.Channel(); err == nil {
				_, _ = ch.QueueDelete(topic, false, false, false)
				_ = ch.ExchangeDelete(topic, false, false)
			}
			conn.Close()
		}
	})
	var out testenv.Buffer
	if err := run(&out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if !regexp.MustCompile(`published 27 events of 9 payments, in order: 0 payments out of order, 0 rolled-back events seen`).MatchString(out.String()) {
		t.Fatalf("unexpected summary:\n%s", out.String())
	}
}

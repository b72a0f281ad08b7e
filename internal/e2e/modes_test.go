package e2e_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox/broker/kafka"
	"github.com/outboxkit/outbox/internal/faulttest"
	"github.com/outboxkit/outbox/internal/testenv"
)

// mode is how relays publish to Kafka: with the default idempotent
// producer, or in transactions (kafka.Config.Transactional).
type mode struct {
	name          string
	transactional bool
}

// modes are the modes the fault tests run in.
var modes = []mode{{"default", false}, {"transactional", true}}

// transactional returns kc in transactional mode, with the timings of the
// fault tests' relays: a publish ends within their short lease, and a
// killed relay's open transaction holds read_committed consumers back for
// 3 s plus the brokers' abort interval (10 s) at most.
func transactional(kc kafka.Config, txnID, progressTopic string) kafka.Config {
	kc.Transactional = true
	kc.TransactionalID = txnID
	kc.ProgressTopic = progressTopic
	kc.DeliveryTimeout = 2 * time.Second
	kc.TransactionTimeout = 3 * time.Second
	return kc
}

// consume starts the consumer that judges a mode: read_committed in
// transactional mode.
func (m mode) consume(t *testing.T, brokers []string, topic string) *testenv.KafkaConsumer {
	t.Helper()
	if m.transactional {
		return testenv.ConsumeKafkaCommitted(t, brokers, topic)
	}
	return testenv.ConsumeKafka(t, brokers, topic)
}

// judge checks what reached topic against what was committed. In the
// default mode the live consumer's record must keep every promise, with
// duplicates at most counted. In transactional mode the topic is read again
// with read_committed once no transaction is open, and must hold every
// committed event exactly once, in key order.
func (m mode) judge(t *testing.T, brokers []string, topic string, check *faulttest.Checker, tc *testenv.KafkaConsumer, counted int64) faulttest.Report {
	t.Helper()
	received := tc.Received()
	if m.transactional {
		received = nil
		for _, r := range testenv.ReadKafkaCommitted(t, brokers, topic) {
			received = append(received, testenv.Received(r))
		}
	}
	report := check.Check(received, counted)
	t.Logf("%s mode: %v", m.name, report)
	require.True(t, report.OK(), report.String())
	if m.transactional {
		require.Zero(t, report.Duplicates, "a read_committed consumer sees each event once")
	}
	return report
}

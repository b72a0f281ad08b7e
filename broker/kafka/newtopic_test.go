package kafka_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker/kafka"
	"github.com/outboxkit/outbox/internal/testenv"
)

// The first call to a topic the client does not know yet is sent at once,
// in both modes. Its records wait for the topic's metadata, and the client
// places them before it stores the topic's partitions: a flush that started
// in between used to miss them, and the call failed after its whole
// DeliveryTimeout (a few of 40 calls under the race detector).
func TestFirstCallToNewTopic(t *testing.T) {
	t.Parallel()
	brokers := testenv.Kafka(t)
	for _, transactional := range []bool{false, true} {
		t.Run(fmt.Sprint("transactional ", transactional), func(t *testing.T) {
			t.Parallel()
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					for range 10 {
						topic := testenv.KafkaTopic(t, brokers, 3)
						cfg := kafka.Config{Brokers: brokers}
						if transactional {
							cfg = txnConfig(t, brokers)
						}
						cfg.DeliveryTimeout = 3 * time.Second
						p, err := kafka.New(cfg)
						if err != nil {
							t.Error(err)
							return
						}
						var msgs []*outbox.Message
						for j := range 10 {
							msgs = append(msgs, message(topic, fmt.Sprint("k", j%4), fmt.Sprint(j)))
						}
						errs := publish(t, p, msgs...)
						p.Close()
						if errs != nil {
							t.Errorf("first call to %s: %v", topic, errs[0])
							return
						}
					}
				})
			}
			wg.Wait()
		})
	}
}

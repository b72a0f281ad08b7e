package kafkacluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/internal/testenv/kafkacluster"
)

// The cluster survives the loss of a partition's leader: with min.insync.replicas
// 2 of 3, a record produced with acks=all after the kill is appended, and the
// killed node comes back from its log directory.
func TestClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node Kafka cluster")
	}
	c := kafkacluster.Start(t, 3)
	version, err := testenv.KafkaVersion(c.Brokers())
	if err != nil {
		t.Fatal(err)
	}
	t.Log("cluster:", version)
	topic := c.CreateTopic(1)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers()...), kgo.DefaultProduceTopic(topic),
		kgo.RecordDeliveryTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("before")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	leader := c.Leader(topic, 0)
	c.Kill(leader)
	start := time.Now()
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("after")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	t.Logf("node %d killed; produced to the new leader after %v", c.NodeID(leader), time.Since(start))
	if now := c.Leader(topic, 0); now == leader {
		t.Fatalf("node %d still leads after it was killed", c.NodeID(leader))
	}
	c.Restart(leader)
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("restarted")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

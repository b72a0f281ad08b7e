package testenv

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// DefaultKafkaBrokers is the broker `make services` starts.
const DefaultKafkaBrokers = "127.0.0.1:9092"

// KafkaBrokers returns OUTBOX_KAFKA_BROKERS (comma-separated) or the local
// default.
func KafkaBrokers() []string {
	return strings.Split(getenv("OUTBOX_KAFKA_BROKERS", DefaultKafkaBrokers), ",")
}

var kafkaProbe struct {
	once    sync.Once
	version string
	err     error
}

// Kafka returns the addresses of the test's Apache Kafka broker, after
// checking once per process that it answers, and logs which broker it is.
// Under CI a broker that does not answer fails the test; elsewhere it skips.
func Kafka(t testing.TB) []string {
	t.Helper()
	brokers := KafkaBrokers()
	if err := PingKafka(); err != nil {
		Unavailable(t, "Kafka at "+strings.Join(brokers, ","), err)
	}
	t.Logf("Kafka: %s at %s", kafkaProbe.version, strings.Join(brokers, ","))
	return brokers
}

// PingKafka reports why the test's Kafka brokers do not answer, checking
// once per process, for Kafka and for a TestMain (see RunExamples).
func PingKafka() error {
	kafkaProbe.once.Do(func() {
		kafkaProbe.version, kafkaProbe.err = KafkaVersion(KafkaBrokers())
	})
	return kafkaProbe.err
}

// KafkaVersion asks the brokers for their API versions and returns the
// Kafka release they match, such as "Apache Kafka v4.1+ (3 brokers)".
func KafkaVersion(brokers []string) (string, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return "", err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var vs kadm.BrokersApiVersions
	for {
		if vs, err = kadm.NewClient(cl).ApiVersions(ctx); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return "", err
		case <-time.After(200 * time.Millisecond):
		}
	}
	sorted := vs.Sorted()
	for _, v := range sorted {
		if v.Err != nil {
			return "", v.Err
		}
	}
	return fmt.Sprintf("Apache Kafka %s (%d brokers answered)", sorted[0].VersionGuess(), len(sorted)), nil
}

// KafkaTopic creates a topic of its own for one test on brokers, with
// partitions partitions and the brokers' default replication, waits until
// every partition has a leader (a client that asks earlier may be told that
// its broker does not lead it), and deletes the topic at the end of the test.
func KafkaTopic(t testing.TB, brokers []string, partitions int32) string {
	t.Helper()
	return KafkaTopicWith(t, brokers, partitions, nil)
}

// KafkaTopicWith is KafkaTopic with topic configs, such as
// {"max.message.bytes": "10000"}.
func KafkaTopicWith(t testing.TB, brokers []string, partitions int32, configs map[string]string) string {
	t.Helper()
	topic := Table("outbox_test")
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var cfg map[string]*string
	for k, v := range configs {
		if cfg == nil {
			cfg = map[string]*string{}
		}
		cfg[k] = &v
	}
	resp, err := adm.CreateTopic(ctx, partitions, -1, cfg, topic)
	if err == nil {
		err = resp.Err
	}
	if err == nil {
		err = waitLeaders(ctx, adm, topic, partitions)
	}
	if err != nil {
		cl.Close()
		t.Fatalf("create topic %s: %v", topic, err)
	}
	t.Cleanup(func() {
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = adm.DeleteTopics(ctx, topic)
	})
	return topic
}

// waitLeaders waits until every partition of topic answers as led: its
// leader lists its offsets. The metadata can name a leader before that
// broker took the partition up, so the metadata alone is not enough.
func waitLeaders(ctx context.Context, adm *kadm.Client, topic string, partitions int32) error {
	for {
		offsets, err := adm.ListEndOffsets(ctx, topic)
		if err == nil && offsets.Error() == nil {
			led := 0
			offsets.Each(func(kadm.ListedOffset) { led++ })
			if led == int(partitions) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("partitions without a leader: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// KafkaTopicReady waits until every partition of a topic that someone else
// created has a leader that serves it, as KafkaTopic does for its topics.
func KafkaTopicReady(t testing.TB, brokers []string, topic string, partitions int32) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := waitLeaders(ctx, kadm.NewClient(cl), topic, partitions); err != nil {
		t.Fatalf("topic %s: %v", topic, err)
	}
}

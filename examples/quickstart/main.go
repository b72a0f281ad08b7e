// Command quickstart shows the outbox end to end: orders and their events are
// written in database transactions (some rolled back on purpose), a relay
// publishes the committed events to Kafka, and a Watermill router consumes
// them. It exits by itself with a summary, non-zero if a committed event was
// lost or a rolled-back one was seen.
//
// -db picks the database: "sqlite" (a file, OUTBOX_SQLITE_PATH, default in
// the temporary folder: no server needed), "postgres" (OUTBOX_POSTGRES_URL,
// default PostgreSQL on 127.0.0.1) or "mysql" (OUTBOX_MYSQL_DSN, a
// go-sql-driver DSN such as root@tcp(127.0.0.1:3306)/test). Without -db it
// takes the one whose variable is set, else SQLite. Kafka is an embedded
// development broker unless OUTBOX_KAFKA_BROKERS (comma-separated) names real
// ones.
// OUTBOX_TABLE names the outbox table (default event_outbox).
//
//	go run ./examples/quickstart [-db sqlite|postgres|mysql]
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker/kafka"
	"github.com/outboxkit/outbox/broker/kafka/devkafka"
	"github.com/outboxkit/outbox/migrations"
	"github.com/outboxkit/outbox/relay"
)

const (
	topic  = "quickstart.orders"
	orders = 20
)

// OrderPlaced is the event's data.
type OrderPlaced struct {
	OrderID    string `json:"order_id"`
	TotalCents int    `json:"total_cents"`
}

func main() {
	dbName := flag.String("db", "", `the database: "sqlite", "postgres" or "mysql" (default: the one whose OUTBOX_ variable is set, else sqlite)`)
	flag.Parse()
	if err := run(os.Stdout, *dbName); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(out io.Writer, dbName string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// 1. The database: the outbox table through migrations, a business table,
	// and the store.
	db, err := openShop(ctx, dbName, cmp.Or(os.Getenv("OUTBOX_TABLE"), migrations.DefaultTable))
	if err != nil {
		return err
	}
	defer db.Close()
	fmt.Fprintln(out, "outbox table on", db.Name())

	// 2. Kafka: a real cluster, or the embedded development broker.
	brokers := strings.Split(os.Getenv("OUTBOX_KAFKA_BROKERS"), ",")
	if brokers[0] == "" {
		dev, err := devkafka.New(devkafka.Config{})
		if err != nil {
			return err
		}
		defer dev.Close()
		brokers = []string{dev.Addr()}
		fmt.Fprintln(out, "embedded development Kafka broker on", dev.Addr())
	}
	pub, err := kafka.New(kafka.Config{Brokers: brokers})
	if err != nil {
		return err
	}
	defer pub.Close()

	// 3. A Watermill router consumes the topic, as the services downstream do.
	run := outbox.NewID().String()[24:] // the random part of the UUIDv7
	var mu sync.Mutex
	seen := map[string]int{} // deliveries of each event
	received := make(chan string, orders+1)
	router, err := consumer(brokers, "quickstart-"+run, func(msg *message.Message) error {
		env, err := outbox.DecodeEnvelope[OrderPlaced](msg.Payload)
		if err != nil || env.Metadata["run"] != run {
			return nil // an event of an earlier run
		}
		fmt.Fprintf(out, "  consumed %s %s (key %s, correlation %s)\n", env.EventType, env.Data.OrderID,
			msg.Metadata.Get(outbox.HeaderAggregateID), msg.Metadata.Get(outbox.HeaderCorrelationID))
		mu.Lock()
		seen[msg.UUID]++
		first := seen[msg.UUID] == 1
		mu.Unlock()
		if first {
			received <- msg.UUID
		}
		return nil
	})
	if err != nil {
		return err
	}
	go func() { _ = router.Run(ctx) }()
	defer router.Close()
	<-router.Running()

	// 4. The relay, in this process: it is woken by each commit.
	r, err := relay.New(db.Store(), pub, relay.Config{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return err
	}
	relayCtx, stopRelay := context.WithCancel(ctx)
	defer stopRelay()
	relayDone := make(chan error, 1)
	go func() { relayDone <- r.Run(relayCtx) }()

	// 5. Write orders; every fourth transaction rolls back on purpose. A
	// last order, committed after all of them, is the sentinel: once the
	// consumer has it, the relay has gone past every earlier write.
	committed, rolledBack := map[string]bool{}, map[string]bool{}
	var sentinel string
	for i := 1; i <= orders+1; i++ {
		rollback := i%4 == 0 && i <= orders
		id, err := placeOrder(ctx, db, run, i, rollback)
		if err != nil {
			return err
		}
		if rollback {
			rolledBack[id] = true
			fmt.Fprintf(out, "wrote order-%d and rolled it back\n", i)
		} else {
			committed[id] = true
			fmt.Fprintf(out, "wrote order-%d and committed\n", i)
		}
		sentinel = id
	}

	// 6. Wait until the consumer has every committed event, the sentinel
	// last among them to be written, then stop the relay.
	pending := maps.Clone(committed)
	timeout := time.After(30 * time.Second)
	for len(pending) > 0 {
		select {
		case id := <-received:
			delete(pending, id)
		case <-timeout:
			return fmt.Errorf("%d committed events not consumed after 30s (sentinel consumed: %v)", len(pending), !pending[sentinel])
		}
	}
	stopRelay()
	if err := <-relayDone; err != nil {
		return err
	}

	mu.Lock()
	defer mu.Unlock()
	consumed, lost, leaked, duplicates := 0, 0, 0, 0
	for id := range committed {
		if seen[id] > 0 {
			consumed++
		} else {
			lost++
		}
	}
	for id, n := range seen {
		if rolledBack[id] {
			leaked++
		}
		duplicates += max(0, n-1)
	}
	fmt.Fprintln(out)
	for _, line := range []struct {
		what string
		n    int
	}{
		{"transactions committed", len(committed)},
		{"transactions rolled back", len(rolledBack)},
		{"events committed", len(committed)},
		{"events the relay published", int(r.Stats().Published)},
		{"events the consumer received from Kafka", consumed},
		{"lost", lost},
		{"from rolled-back transactions", leaked},
		{"duplicates", duplicates},
	} {
		fmt.Fprintf(out, "%-41s %d\n", line.what+":", line.n)
	}
	if lost > 0 || leaked > 0 || duplicates > 0 {
		return fmt.Errorf("%d committed events lost, %d rolled-back events published, %d duplicates", lost, leaked, duplicates)
	}
	return nil
}

// placeOrder writes an order and its event in one transaction, and commits
// it unless rollback is set. It returns the event ID.
func placeOrder(ctx context.Context, db shop, run string, i int, rollback bool) (string, error) {
	orderID := fmt.Sprintf("%s-order-%d", run, i)
	event, err := outbox.Envelope[OrderPlaced]{
		EventType:     "shop.order.placed.v1",
		SourceService: "quickstart",
		Data:          OrderPlaced{OrderID: orderID, TotalCents: 100 * i},
		Metadata:      map[string]any{"run": run},
	}.Event(topic, "order", orderID)
	if err != nil {
		return "", err
	}
	return event.ID.String(), db.PlaceOrder(ctx, orderID, 100*i, event, rollback)
}

// consumer returns a router whose handler reads topic with a Watermill Kafka
// subscriber in its own consumer group, from the oldest offset.
func consumer(brokers []string, group string, handle func(*message.Message) error) (*message.Router, error) {
	logger := watermill.NopLogger{}
	cfg := wkafka.DefaultSaramaSubscriberConfig()
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	sub, err := wkafka.NewSubscriber(wkafka.SubscriberConfig{
		Brokers: brokers, Unmarshaler: wkafka.DefaultMarshaler{}, OverwriteSaramaConfig: cfg, ConsumerGroup: group,
	}, logger)
	if err != nil {
		return nil, err
	}
	router, err := message.NewRouter(message.RouterConfig{}, logger)
	if err != nil {
		return nil, err
	}
	router.AddConsumerHandler("print-orders", topic, sub, handle)
	return router, nil
}

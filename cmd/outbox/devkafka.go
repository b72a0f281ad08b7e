package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/outboxkit/outbox/broker/kafka/devkafka"
)

var devkafkaCommand = &command{
	name:    "devkafka",
	summary: "run a development Kafka broker (in memory, kfake) on 127.0.0.1 until interrupted",
	setup: func(fs *flag.FlagSet) func(context.Context, *invocation) error {
		port := fs.Int("port", 9092, "TCP port on 127.0.0.1; 0 picks a free one")
		partitions := fs.Int("partitions", devkafka.DefaultPartitions, "partitions of topics created on first use")
		maxMessageBytes := fs.Int("max-message-bytes", 0, "the broker's message.max.bytes; 0 keeps Kafka's default")
		return func(ctx context.Context, inv *invocation) error {
			b, err := devkafka.New(devkafka.Config{Port: *port, Partitions: *partitions, MaxMessageBytes: *maxMessageBytes})
			if err != nil {
				return err
			}
			defer b.Close()
			fmt.Fprintf(inv.stdout, "devkafka listening on %s (Ctrl-C stops it; data is in memory only)\n", b.Addr())
			<-ctx.Done()
			return nil
		}
	},
}

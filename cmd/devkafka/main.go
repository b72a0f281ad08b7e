// Command devkafka runs a development Kafka broker in one process (in
// memory, franz-go's kfake behind package devkafka) on 127.0.0.1 until
// interrupted: for trying the outbox without installing Kafka. Tests run
// against Apache Kafka (make services).
//
//	go run ./cmd/devkafka -port 9092
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/outboxkit/outbox/broker/kafka/devkafka"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run runs the broker until ctx is done and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("devkafka", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := fs.Int("port", 9092, "TCP port on 127.0.0.1; 0 picks a free one")
	partitions := fs.Int("partitions", devkafka.DefaultPartitions, "partitions of topics created on first use")
	maxMessageBytes := fs.Int("max-message-bytes", 0, "the broker's message.max.bytes; 0 keeps Kafka's default")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "devkafka: unexpected arguments %q\n", fs.Args())
		return 2
	}
	b, err := devkafka.New(devkafka.Config{Port: *port, Partitions: *partitions, MaxMessageBytes: *maxMessageBytes})
	if err != nil {
		fmt.Fprintln(stderr, "devkafka:", err)
		return 1
	}
	defer b.Close()
	fmt.Fprintf(stdout, "devkafka listening on %s (Ctrl-C stops it; data is in memory only)\n", b.Addr())
	<-ctx.Done()
	return 0
}

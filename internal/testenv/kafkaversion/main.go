// Command kafkaversion prints which Kafka the tests run against
// (OUTBOX_KAFKA_BROKERS): make test runs it first, because go test shows the
// logs of passing tests only with -v. When the brokers do not answer it
// says so, and fails under CI, as the tests do.
//
//	go run ./internal/testenv/kafkaversion
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/outboxkit/outbox/internal/testenv"
)

func main() {
	brokers := testenv.KafkaBrokers()
	v, err := testenv.KafkaVersion(brokers)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kafkaversion: %s: %v; the Kafka tests will skip (fail under CI)\n", strings.Join(brokers, ","), err)
		if os.Getenv("CI") != "" {
			os.Exit(1)
		}
		return
	}
	fmt.Printf("Kafka tests run against %s at %s\n", v, strings.Join(brokers, ","))
}

// Package e2e holds the end-to-end fault tests: real PostgreSQL and MariaDB,
// the relay in this process or in child processes (the test binary run again
// as a relay), and Apache Kafka (the shared broker, or a cluster the test
// starts and kills), judged by the shared checker of internal/faulttest. The
// relay suite of relay/relaytest runs here over broker/kafka and over the
// Watermill-Kafka path. Only faults a real broker cannot be made to inject
// (lost acks) run on devkafka. It has no code of its own besides the tests.
package e2e

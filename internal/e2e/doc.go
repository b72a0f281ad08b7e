// Package e2e holds the end-to-end fault tests: real PostgreSQL, the relay in
// this process or in child processes (the test binary run again as a relay),
// and the development Kafka broker over TCP, judged by the shared checker of
// internal/faulttest. It has no code of its own besides the tests.
package e2e

// Package rabbitmq gives tests the address of the RabbitMQ server they need,
// as package testenv does for the other services. It is a package of its
// own so that only the modules whose tests use RabbitMQ depend on an AMQP
// client.
package rabbitmq

import (
	"cmp"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/outboxkit/outbox/internal/testenv"
)

// DefaultURL is the RabbitMQ that `make services` starts.
const DefaultURL = "amqp://guest:guest@127.0.0.1:5672/"

var probe struct {
	once    sync.Once
	version string
	err     error
}

// URL returns OUTBOX_AMQP_URL or DefaultURL, after checking once per
// process that the server answers AMQP, and logs which server it is. Under
// CI a server that does not answer fails the test; elsewhere it skips.
func URL(t testing.TB) string {
	t.Helper()
	u := cmp.Or(os.Getenv("OUTBOX_AMQP_URL"), DefaultURL)
	shown := u
	if parsed, err := url.Parse(u); err == nil {
		shown = parsed.Redacted()
	}
	probe.once.Do(func() { probe.version, probe.err = Version(u) })
	if probe.err != nil {
		testenv.Unavailable(t, "RabbitMQ at "+shown, probe.err)
	}
	t.Logf("AMQP: %s at %s", probe.version, shown)
	return u
}

// Version connects to the AMQP server at u and returns the product and
// version it announces, such as "RabbitMQ 3.10.8".
func Version(u string) (string, error) {
	conn, err := amqp.DialConfig(u, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	return fmt.Sprintf("%v %v", conn.Properties["product"], conn.Properties["version"]), nil
}

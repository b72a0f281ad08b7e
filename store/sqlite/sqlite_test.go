package sqlite_test

import (
	"testing"

	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/relay/relaytest"
	"github.com/outboxkit/outbox/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, testenv.SQLiteHarness)
}

// The relay's promises on SQLite, the same suite as on PostgreSQL and MySQL.
func TestRelayConformance(t *testing.T) {
	relaytest.Run(t, testenv.SQLiteHarness)
}

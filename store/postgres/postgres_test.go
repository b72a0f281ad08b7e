package postgres_test

import (
	"testing"

	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, testenv.PostgresHarness)
}

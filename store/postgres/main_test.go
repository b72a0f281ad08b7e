package postgres_test

import (
	"os"
	"testing"

	"github.com/outboxkit/outbox/internal/testenv"
)

// TestMain leaves out the examples when PostgreSQL does not answer (outside
// CI), since an example cannot skip itself.
func TestMain(m *testing.M) {
	os.Exit(testenv.RunExamples(m, "PostgreSQL", testenv.PingPostgres))
}

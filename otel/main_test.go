package otel_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that relays, routers and pools stop with their tests.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

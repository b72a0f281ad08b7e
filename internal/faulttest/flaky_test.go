package faulttest_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/internal/faulttest"
)

// A Flaky that fails every message at random still hands a reclaimed one
// to its publisher, which may have to look it up.
func TestFlakyPassesReclaimed(t *testing.T) {
	rec := faulttest.NewRecorder()
	f := faulttest.NewFlaky(rec, 1, 1)
	msgs := []*outbox.Message{
		{ID: uuid.New(), Topic: "t", Key: "a", Reclaimed: true},
		{ID: uuid.New(), Topic: "t", Key: "b"},
	}
	errs := f.Publish(context.Background(), msgs)
	if len(errs) != 2 || errs[0] != nil || errs[1] == nil {
		t.Fatalf("errs = %v, want the reclaimed one passed and the other failed", errs)
	}
	if got := rec.Messages(); len(got) != 1 || got[0].ID != msgs[0].ID {
		t.Fatalf("published %v, want the reclaimed message", got)
	}
}

package relay_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/relay"
	"github.com/outboxkit/outbox/store"
)

// noStore and noBroker satisfy the contracts; validation never calls them.
type noStore struct{ store.Store }
type noBroker struct{}

func (noBroker) Publish(context.Context, []*outbox.Message) []error { return nil }

// Invalid settings are refused with the field's name; store and publisher
// are required.
func TestConfigValidation(t *testing.T) {
	_, err := relay.New(noStore{}, noBroker{}, relay.Config{BatchSize: -1, Lease: time.Millisecond})
	require.ErrorContains(t, err, "Config.BatchSize")
	require.ErrorContains(t, err, "Config.Lease")
	_, err = relay.New(nil, nil, relay.Config{})
	require.Error(t, err)
	_, err = relay.New(noStore{}, noBroker{}, relay.Config{})
	require.NoError(t, err)
	_, err = relay.New(noStore{}, noBroker{}, relay.Config{Retention: -3})
	require.ErrorContains(t, err, "Config.Retention")
	_, err = relay.New(noStore{}, noBroker{}, relay.Config{Retention: relay.KeepForever})
	require.NoError(t, err)
}

// Publish-and-delete needs a store that can delete published events.
func TestDeleteOnPublishNeedsDeleter(t *testing.T) {
	_, err := relay.New(noStore{}, noBroker{}, relay.Config{Retention: relay.DeleteOnPublish})
	require.ErrorContains(t, err, "DeleteOnPublish")
	_, err = relay.New(deleter{}, noBroker{}, relay.Config{Retention: relay.DeleteOnPublish})
	require.NoError(t, err)
}

type deleter struct{ store.Store }

func (deleter) DeletePublishedNow(context.Context, uuid.UUID, []uuid.UUID) (int, error) {
	return 0, nil
}

package outboxwatermill

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outbox/relay"
)

// relays numbers the handlers that RelayPlugin adds, since handler names
// must be unique within a router.
var relays atomic.Int64

// RelayPlugin returns a router plugin that runs r while the router runs.
// Add it with router.AddPlugin before Run.
//
// The relay starts when the router runs its handlers and stops when the
// router closes (Close, or the context given to Run is done): it stops
// claiming, finishes the batch in flight, records it, releases its leases,
// and only then lets Close return. Keep RouterConfig.CloseTimeout (default
// 30s) above the relay's ShutdownTimeout plus twice its SettleTimeout
// (default 20s), or Close returns a timeout error while the relay is still
// stopping.
//
// The relay runs as a router handler named "outbox-relay-N" that consumes
// nothing; router middleware never sees a message from it.
func RelayPlugin(r *relay.Relay) message.RouterPlugin {
	return func(router *message.Router) error {
		name := "outbox-relay-" + strconv.FormatInt(relays.Add(1), 10)
		sub := &relaySubscriber{relay: r, logger: router.Logger().With(watermill.LogFields{"handler_name": name})}
		router.AddConsumerHandler(name, name, sub, func(*message.Message) error { return nil })
		return nil
	}
}

// relaySubscriber runs the relay in place of a subscription: the router
// starts it with the subscription and waits for it when closing, which
// gives the relay the router's lifecycle through its public API (the router
// has no close hook). Its channel never carries a message and is closed
// once the relay has returned.
type relaySubscriber struct {
	relay  *relay.Relay
	logger watermill.LoggerAdapter

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// Subscribe starts the relay under ctx, which the router cancels when it
// closes.
func (s *relaySubscriber) Subscribe(ctx context.Context, _ string) (<-chan *message.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done != nil {
		return nil, errors.New("outboxwatermill: relay handler subscribed twice")
	}
	ctx, s.cancel = context.WithCancel(ctx)
	s.done = make(chan struct{})
	out := make(chan *message.Message)
	go func() {
		defer close(s.done)
		defer close(out)
		if err := s.relay.Run(ctx); err != nil {
			s.logger.Error("Outbox relay did not run", err, nil)
		}
	}()
	return out, nil
}

// Close stops the relay and waits until it has shut down.
func (s *relaySubscriber) Close() error {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.mu.Unlock()
	if done == nil {
		return nil
	}
	cancel()
	<-done
	return nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"

	"github.com/outboxkit/outbox"
	outboxwatermill "github.com/outboxkit/outbox/contrib/watermill"
	outboxotel "github.com/outboxkit/outbox/otel"
)

// Consumers is the second router: stand-ins for the downstream services,
// consuming the orchestrator's events through the inbox and the tracing
// middleware. The four phase services report their result by calling the
// orchestrator in their inbox transaction (in production they would publish
// a result event that the orchestrator consumes in the same way); the
// monitor records each batch's outcome.
type Consumers struct {
	router *message.Router
	// lostAcks counts the simulated crashes between commit and ack.
	lostAcks atomic.Int64
}

// failAt says which batch fails in which phase, and why.
type failAt struct {
	batchID string
	phase   Phase
	reason  string
}

// errLostAck is returned once per message after its transaction committed,
// as if the consumer crashed before acking: Kafka redelivers the message
// and the inbox acks it without running the handler again.
var errLostAck = errors.New("simulated crash between commit and ack")

func newConsumers(brokers []string, prefix string, inbox *outboxwatermill.Inbox[pgx.Tx], orch *Orchestrator, outcomes string,
	fail failAt, otelOpts []outboxotel.Option, log *slog.Logger) (*Consumers, error) {
	c := &Consumers{}
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	if err != nil {
		return nil, err
	}
	router.AddMiddleware(outboxwatermill.Middleware(otelOpts...), c.loseFirstAck(log))
	for _, phase := range phases {
		service := string(phase) + "_service"
		sub, err := subscriber(brokers, prefix+service)
		if err != nil {
			return nil, err
		}
		router.AddConsumerHandler(service, prefix+initiatedEvent[phase], sub,
			inbox.Handler(func(ctx context.Context, tx pgx.Tx, msg *message.Message) error {
				env, err := outbox.DecodeEnvelope[PhaseInitiatedV1](msg.Payload)
				if err != nil {
					return err
				}
				failure := ""
				if env.Data.BatchID == fail.batchID && phase == fail.phase {
					failure = fail.reason
				}
				return orch.PhaseCompleted(ctx, tx, env.Data.BatchID, phase, failure)
			}))
	}
	for _, topic := range []string{EventBatchProcessingCompleted, EventBatchProcessingFailed} {
		sub, err := subscriber(brokers, prefix+"batch_monitor")
		if err != nil {
			return nil, err
		}
		router.AddConsumerHandler("monitor "+topic, prefix+topic, sub,
			inbox.Handler(func(ctx context.Context, tx pgx.Tx, msg *message.Message) error {
				batchID := msg.Metadata.Get(outbox.HeaderAggregateID)
				if _, err := tx.Exec(ctx, `INSERT INTO `+outcomes+` (batch_id, event_type, correlation_id) VALUES ($1, $2, $3)`,
					batchID, msg.Metadata.Get(outbox.HeaderEventType), outbox.CorrelationID(ctx)); err != nil {
					return fmt.Errorf("record outcome of %s: %w", batchID, err)
				}
				return nil
			}))
	}
	c.router = router
	return c, nil
}

// loseFirstAck fails each message once after its handler committed, and
// logs the handler errors that are not simulated.
func (c *Consumers) loseFirstAck(log *slog.Logger) message.HandlerMiddleware {
	var seen sync.Map
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			out, err := h(msg)
			if err != nil {
				log.Warn("handler failed, message will be redelivered", "handler", message.HandlerNameFromCtx(msg.Context()),
					"message_uuid", msg.UUID, "err", err)
				return out, err
			}
			if _, again := seen.LoadOrStore(msg.UUID, true); !again {
				c.lostAcks.Add(1)
				return nil, errLostAck
			}
			return out, nil
		}
	}
}

// subscriber returns a Kafka subscriber in the consumer group of a service,
// reading from the oldest offset when the group is new.
func subscriber(brokers []string, group string) (*wkafka.Subscriber, error) {
	cfg := wkafka.DefaultSaramaSubscriberConfig()
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Interval = 100 * time.Millisecond
	return wkafka.NewSubscriber(wkafka.SubscriberConfig{
		Brokers: brokers, Unmarshaler: wkafka.DefaultMarshaler{}, OverwriteSaramaConfig: cfg, ConsumerGroup: group,
	}, watermill.NopLogger{})
}

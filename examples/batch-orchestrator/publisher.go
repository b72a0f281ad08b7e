package main

import (
	"context"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"

	"github.com/outboxkit/outbox"
	outboxwatermill "github.com/outboxkit/outbox/contrib/watermill"
	"github.com/outboxkit/outbox/store/postgres"
)

// sourceService names this service in every envelope.
const sourceService = "batch_orchestrator_service"

// BatchEventPublisher is the Python service's DefaultBatchEventPublisherImpl: each
// method writes one event into the outbox inside the caller's transaction,
// the one that changes the batch's state, so that the event is published if
// and only if the state change commits.
type BatchEventPublisher struct {
	outbox      *postgres.Store
	topicPrefix string
}

// PublishSpellcheckPhaseInitiated writes the spellcheck phase-initiated event.
func (p *BatchEventPublisher) PublishSpellcheckPhaseInitiated(ctx context.Context, tx pgx.Tx, b Batch) error {
	return p.publishPhaseInitiated(ctx, tx, b, PhaseSpellcheck)
}

// PublishNLPPhaseInitiated writes the NLP phase-initiated event.
func (p *BatchEventPublisher) PublishNLPPhaseInitiated(ctx context.Context, tx pgx.Tx, b Batch) error {
	return p.publishPhaseInitiated(ctx, tx, b, PhaseNLP)
}

// PublishCJAssessmentPhaseInitiated writes the CJ assessment phase-initiated
// event.
func (p *BatchEventPublisher) PublishCJAssessmentPhaseInitiated(ctx context.Context, tx pgx.Tx, b Batch) error {
	return p.publishPhaseInitiated(ctx, tx, b, PhaseCJAssessment)
}

// PublishAIFeedbackPhaseInitiated writes the AI feedback phase-initiated
// event.
func (p *BatchEventPublisher) PublishAIFeedbackPhaseInitiated(ctx context.Context, tx pgx.Tx, b Batch) error {
	return p.publishPhaseInitiated(ctx, tx, b, PhaseAIFeedback)
}

// PublishBatchProcessingCompleted writes the completed event.
func (p *BatchEventPublisher) PublishBatchProcessingCompleted(ctx context.Context, tx pgx.Tx, b Batch) error {
	return publishToOutbox(ctx, p, tx, EventBatchProcessingCompleted, b.ID,
		BatchProcessingCompletedV1{BatchID: b.ID, PhasesCompleted: phases, EssayCount: len(b.EssayIDs)})
}

// PublishBatchProcessingFailed writes the failed event.
func (p *BatchEventPublisher) PublishBatchProcessingFailed(ctx context.Context, tx pgx.Tx, b Batch, phase Phase, reason string) error {
	return publishToOutbox(ctx, p, tx, EventBatchProcessingFailed, b.ID,
		BatchProcessingFailedV1{BatchID: b.ID, FailedPhase: phase, Error: reason})
}

func (p *BatchEventPublisher) publishPhaseInitiated(ctx context.Context, tx pgx.Tx, b Batch, phase Phase) error {
	return publishToOutbox(ctx, p, tx, initiatedEvent[phase], b.ID,
		PhaseInitiatedV1{BatchID: b.ID, Phase: phase, EssayIDs: b.EssayIDs, Language: "en"})
}

// publishToOutbox is the Python service's centralized publish_to_outbox: it wraps data
// in the envelope the Python services read and writes it through Watermill's
// Publisher interface, topic = event type, key = batch ID. The correlation
// ID is the one the context carries (the batch's, through the consumer
// middleware), so all events of a batch share it.
func publishToOutbox[T any](ctx context.Context, p *BatchEventPublisher, tx pgx.Tx, eventType, batchID string, data T) error {
	env := outbox.Envelope[T]{
		EventID:       outbox.NewID(),
		EventType:     eventType,
		SourceService: sourceService,
		CorrelationID: outbox.CorrelationID(ctx),
		Data:          data,
	}
	event, err := env.Event(eventType, "batch", batchID)
	if err != nil {
		return err
	}
	msg := message.NewMessage(event.ID.String(), message.Payload(event.Payload))
	msg.Metadata = message.Metadata{
		outbox.HeaderEventType:     eventType,
		outbox.HeaderAggregateType: "batch",
		outbox.HeaderAggregateID:   batchID,
		outbox.HeaderCorrelationID: event.Headers[outbox.HeaderCorrelationID],
	}
	msg.SetContext(ctx)
	if err := outboxwatermill.NewPublisher(p.outbox, tx).Publish(p.topicPrefix+eventType, msg); err != nil {
		return fmt.Errorf("publish %s for %s: %w", eventType, batchID, err)
	}
	return nil
}

package main

// The six events of the Batch Orchestrator Service. Each event type is also
// its topic, as in the Python services, and each event's envelope carries the
// data below.
const (
	EventSpellcheckPhaseInitiated   = "batch.spellcheck.initiated.v1"
	EventNLPPhaseInitiated          = "batch.nlp.initiated.v1"
	EventCJAssessmentPhaseInitiated = "batch.cj_assessment.initiated.v1"
	EventAIFeedbackPhaseInitiated   = "batch.ai_feedback.initiated.v1"
	EventBatchProcessingCompleted   = "batch.processing.completed.v1"
	EventBatchProcessingFailed      = "batch.processing.failed.v1"
)

// Phase is a processing phase of a batch, in pipeline order.
type Phase string

// The phases, in order.
const (
	PhaseSpellcheck   Phase = "spellcheck"
	PhaseNLP          Phase = "nlp"
	PhaseCJAssessment Phase = "cj_assessment"
	PhaseAIFeedback   Phase = "ai_feedback"
)

var phases = []Phase{PhaseSpellcheck, PhaseNLP, PhaseCJAssessment, PhaseAIFeedback}

// initiatedEvent is the event that starts each phase.
var initiatedEvent = map[Phase]string{
	PhaseSpellcheck:   EventSpellcheckPhaseInitiated,
	PhaseNLP:          EventNLPPhaseInitiated,
	PhaseCJAssessment: EventCJAssessmentPhaseInitiated,
	PhaseAIFeedback:   EventAIFeedbackPhaseInitiated,
}

// next returns the phase after p, or "" after the last.
func (p Phase) next() Phase {
	for i, q := range phases[:len(phases)-1] {
		if q == p {
			return phases[i+1]
		}
	}
	return ""
}

// PhaseInitiatedV1 is the data of the four phase-initiated events.
type PhaseInitiatedV1 struct {
	BatchID  string   `json:"batch_id"`
	Phase    Phase    `json:"phase"`
	EssayIDs []string `json:"essay_ids"`
	Language string   `json:"language"`
}

// BatchProcessingCompletedV1 is the data of the completed event.
type BatchProcessingCompletedV1 struct {
	BatchID         string  `json:"batch_id"`
	PhasesCompleted []Phase `json:"phases_completed"`
	EssayCount      int     `json:"essay_count"`
}

// BatchProcessingFailedV1 is the data of the failed event.
type BatchProcessingFailedV1 struct {
	BatchID     string `json:"batch_id"`
	FailedPhase Phase  `json:"failed_phase"`
	Error       string `json:"error"`
}

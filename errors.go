package outbox

import (
	"errors"
	"fmt"

	"github.com/google/uuid"
)

// Validation errors. Every [ValidationError] matches [ErrInvalidEvent] and one
// of the more precise sentinels below through errors.Is.
var (
	ErrInvalidEvent   = errors.New("outbox: invalid event")
	ErrEmptyTopic     = errors.New("empty topic")
	ErrInvalidTopic   = errors.New("invalid topic name")
	ErrEmptyEventType = errors.New("empty event type")
	ErrEmptyKey       = errors.New("empty key on an ordered event")
	ErrInvalidPayload = errors.New("payload is not valid JSON")
	ErrTooLarge       = errors.New("event too large")
	ErrReservedHeader = errors.New("reserved header name")
	ErrInvalidHeader  = errors.New("invalid header")
)

// Publish outcome classes. Broker adapters wrap the errors they return with
// one of these so that the relay can decide what to do; an error that matches
// neither is transient and retried with backoff.
var (
	// ErrPermanent marks a message the broker will never accept (too large,
	// invalid topic, unmarshalable). The relay parks its event at once.
	ErrPermanent = errors.New("permanent publish error")
	// ErrUnreachable marks a failure to reach the broker at all (connection
	// refused, timeouts, no leader). When every message of a batch fails so,
	// the relay releases the events without counting an attempt.
	ErrUnreachable = errors.New("broker unreachable")
	// ErrSkipped marks a message a publisher did not send because an earlier
	// message with the same topic and key failed in the same call, or, in a
	// transaction, one that went back with its transaction because another
	// message failed. The broker did not take it. The relay releases it
	// without counting an attempt.
	ErrSkipped = errors.New("skipped after an earlier failure of the same key")
	// ErrUnknownOutcome marks a failed message that the broker may have
	// appended all the same: its request may have reached the broker, and
	// no answer says it was refused (a timeout, a lost answer, a connection
	// that broke after the write). The relay counts each such message as a
	// possible duplicate, and only these. It may come with ErrUnreachable
	// or a transient error, never with ErrPermanent or ErrSkipped.
	ErrUnknownOutcome = errors.New("outcome unknown: the broker may have appended the message")
	// ErrInDoubt marks a message that the broker may have published and
	// that must not be published again before that is known: a publisher
	// that records what it published (broker/kafka in transactional mode)
	// could not find out in time. The relay leaves the event in its claim,
	// also through shutdown; once the claim's lease ends, the next claim hands it to
	// the publisher again with Message.Reclaimed set, and the publisher
	// looks it up before it publishes it. It may come with ErrUnreachable.
	ErrInDoubt = errors.New("in doubt: the broker may have published the message")
)

// ValidationError reports an event rejected before any SQL ran. The caller's
// transaction is untouched and stays usable.
type ValidationError struct {
	// Index is the position of the event in the call.
	Index int
	// EventID is the ID of the rejected event (after defaults were filled).
	EventID uuid.UUID
	// Err is one of the sentinels ErrEmptyTopic, ErrInvalidTopic, ...
	Err error
	// Detail says what exactly was wrong, e.g. the size and the limit.
	Detail string
}

func (e *ValidationError) Error() string {
	msg := fmt.Sprintf("outbox: invalid event %d (%s): %v", e.Index, e.EventID, e.Err)
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// Unwrap lets errors.Is match both the precise sentinel and ErrInvalidEvent.
func (e *ValidationError) Unwrap() []error { return []error{e.Err, ErrInvalidEvent} }

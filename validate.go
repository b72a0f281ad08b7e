package outbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// DefaultMaxRecordBytes is the default limit on an event's payload, key and
// headers together: Kafka's default message.max.bytes is about 1 MB.
const DefaultMaxRecordBytes = 1_000_000

// Limits bound the size of events. The zero value means the defaults.
type Limits struct {
	// MaxRecordBytes bounds payload + key + header names and values.
	// Defaults to DefaultMaxRecordBytes.
	MaxRecordBytes int
	// MaxKeyBytes bounds the key alone. Defaults to MaxRecordBytes.
	MaxKeyBytes int
	// MaxHeaderBytes bounds header names and values together. Defaults to
	// MaxRecordBytes.
	MaxHeaderBytes int
}

func (l Limits) withDefaults() Limits {
	if l.MaxRecordBytes <= 0 {
		l.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if l.MaxKeyBytes <= 0 {
		l.MaxKeyBytes = l.MaxRecordBytes
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = l.MaxRecordBytes
	}
	return l
}

// ValidTopic reports whether Kafka accepts name as a topic:
// 1 to 249 characters of [a-zA-Z0-9._-], and neither "." nor "..".
func ValidTopic(name string) bool {
	if name == "" || len(name) > 249 || name == "." || name == ".." {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Validate checks e against limits as a store does before writing it. It does
// not fill defaults; see [Prepare].
func (e *Event) Validate(limits Limits) error {
	if err := e.validate(limits); err != nil {
		return err
	}
	return nil
}

func (e *Event) validate(limits Limits) *ValidationError {
	limits = limits.withDefaults()
	bad := func(err error, format string, args ...any) *ValidationError {
		return &ValidationError{EventID: e.ID, Err: err, Detail: fmt.Sprintf(format, args...)}
	}
	switch {
	case e.Topic == "":
		return bad(ErrEmptyTopic, "")
	case !ValidTopic(e.Topic):
		return bad(ErrInvalidTopic, "%q: want 1-249 of [a-zA-Z0-9._-], not . or ..", e.Topic)
	case strings.TrimSpace(e.EventType) == "":
		return bad(ErrEmptyEventType, "")
	case e.Key == "" && !e.Unordered:
		return bad(ErrEmptyKey, "set Key or AggregateID, or mark the event Unordered")
	case !json.Valid(e.Payload):
		return bad(ErrInvalidPayload, "%d bytes", len(e.Payload))
	case hasNULEscape(e.Payload):
		return bad(ErrInvalidPayload, `payload contains \u0000, which PostgreSQL cannot store`)
	case strings.ContainsRune(e.Key, 0) || strings.ContainsRune(e.EventType, 0) ||
		strings.ContainsRune(e.AggregateType, 0) || strings.ContainsRune(e.AggregateID, 0):
		return bad(ErrInvalidEvent, "NUL byte in key, event type or aggregate")
	}
	headerBytes := 0
	for name, value := range e.Headers {
		if slices.Contains(reservedHeaders, name) {
			return bad(ErrReservedHeader, "%q is set by the relay", name)
		}
		if name == "" || strings.ContainsRune(name, 0) || strings.ContainsRune(value, 0) {
			return bad(ErrInvalidHeader, "%q: empty name or NUL byte", name)
		}
		headerBytes += len(name) + len(value)
	}
	switch total := len(e.Payload) + len(e.Key) + headerBytes; {
	case len(e.Key) > limits.MaxKeyBytes:
		return bad(ErrTooLarge, "key is %d bytes, limit %d", len(e.Key), limits.MaxKeyBytes)
	case headerBytes > limits.MaxHeaderBytes:
		return bad(ErrTooLarge, "headers are %d bytes, limit %d", headerBytes, limits.MaxHeaderBytes)
	case total > limits.MaxRecordBytes:
		return bad(ErrTooLarge, "record is %d bytes, limit %d", total, limits.MaxRecordBytes)
	}
	return nil
}

// hasNULEscape reports whether valid JSON p contains the escape \u0000.
// A backslash always starts a two-character escape in valid JSON, so skipping
// the escaped character keeps "\\u0000" (a literal backslash) from matching.
func hasNULEscape(p []byte) bool {
	for i := bytes.IndexByte(p, '\\'); i >= 0 && i+1 < len(p); {
		if p[i+1] == 'u' && i+6 <= len(p) && string(p[i+2:i+6]) == "0000" {
			return true
		}
		next := bytes.IndexByte(p[i+2:], '\\')
		if next < 0 {
			return false
		}
		i += 2 + next
	}
	return false
}

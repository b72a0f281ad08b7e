// Package outbox is the core of a transactional outbox for Go services.
//
// A service writes an [Event] into the event_outbox table in the same database
// transaction as its business rows, through a store adapter such as
// store/postgres or store/mysql. A relay (package relay) claims committed
// events, publishes them through a broker adapter (package broker, broker/kafka)
// and marks them published. An event is published if and only if the
// transaction that wrote it committed, at least once, in per-key order.
//
// This package holds what both sides share and imports no adapter: the event and
// its JSON [Envelope], validation with typed errors ([ValidationError]), the
// header names that travel with each message, correlation-ID context helpers,
// and the small hook interfaces through which tracing and metrics plug in.
//
// Delivery is at least once: consumers dedupe on the event ID, which every
// message carries as its Watermill UUID ([HeaderMessageUUID]).
package outbox

// Package kafka publishes outbox messages to Kafka with a producer
// configuration that keeps the relay's promises, in the wire format of
// watermill-kafka so that Watermill Kafka subscribers read them as ordinary
// Watermill messages.
//
// # Wire format
//
// Messages are marshaled with watermill-kafka's DefaultMarshaler: the
// header _watermill_message_uuid carries the event ID and every other
// message header (correlation_id, event_type, traceparent, ...) is a
// header of its own. The Kafka key is the message key (none when empty) and
// the value is the payload, byte for byte. Keys are hashed with sarama's
// hash partitioner (FNV-1a), as watermill-kafka does, so all events of a
// key land in one partition; Java clients hash with murmur2 and may place a
// key elsewhere.
//
// # Producer
//
// [NewSaramaConfig] is the configuration [New] always uses: an idempotent
// producer with acks from all in-sync replicas and one request in flight per
// connection, so that a resend after a lost ack neither duplicates nor
// reorders; bounded timeouts and retries. watermill-kafka's own publisher
// defaults to acks=1 without idempotence and sends one message per round
// trip; this one sends a Publish call as one produce request per broker.
//
// # Errors
//
// Message too large, invalid topic, invalid record and marshal errors wrap
// outbox.ErrPermanent. Connection errors, timeouts, no broker, no leader and
// not enough replicas wrap outbox.ErrUnreachable. Everything else is
// transient.
//
// # Time to report an unreachable broker
//
// A broker that refuses connections is reported within about a second. A
// blackholed broker (it accepts connections, or is already connected, but
// never answers) costs a network timeout for the produce request, one for
// the metadata refresh that follows, and, if sarama's one resend goes out,
// two more for that resend: at most 4 × NetTimeout plus a 250 ms backoff,
// about 12.3 s with the default 3 s, below half the relay's default 30 s
// lease. Measured with the default config against devkafka: 9.3 s (the
// leader lookup before the resend times out too, so the resend never goes
// out). Reproduce with
//
//	go test -run TestBlackholeReport -v ./broker/kafka/
package kafka

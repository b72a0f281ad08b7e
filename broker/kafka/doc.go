// Package kafka publishes outbox messages to Kafka with a producer
// configuration that keeps the relay's promises, in the wire format of
// watermill-kafka so that Watermill Kafka subscribers read them as ordinary
// Watermill messages.
//
// # Wire format
//
// Records are written as watermill-kafka's DefaultMarshaler writes them (a
// test pins it): the header _watermill_message_uuid carries the event ID and
// comes first, and every other message header (correlation_id, event_type,
// traceparent, ...) is a header of its own. The Kafka key is the message key (none when empty) and
// the value is the payload, byte for byte. Keys are hashed with sarama's
// hash partitioner (FNV-1a), as watermill-kafka does, so all events of a
// key land in one partition; Java clients hash with murmur2 and may place a
// key elsewhere.
//
// # Producer
//
// [Publisher] produces on sarama's low-level API: a sarama Client for
// metadata, its own record batches and produce requests, and the producer ID
// and epoch of Kafka's idempotent producer, whose sequence numbers it keeps
// per partition. [NewSaramaConfig] is the configuration it uses: acks from
// all in-sync replicas, one request in flight per connection, bounded
// timeouts and retries, sarama's hash partitioner. watermill-kafka's own
// publisher defaults to acks=1 without idempotence and sends one message per
// round trip; this one sends a Publish call as one produce request per
// leader broker, at once, with one record batch per partition.
//
// # Order
//
// Kafka appends a record batch whole or not at all, and a key always maps to
// one partition, so a call's messages of one key share one fate: they are
// all appended, in call order, or none is. A partition's messages over
// MaxMessageBytes go out as several batches, each sent only after the one
// before it was appended; when one fails, the later ones leave out the keys
// that failed. A batch is resent with its own sequence numbers, so the
// broker drops a copy it already has (a lost ack) and appends nothing after
// a gap. Calls that share a Publisher take a partition one at a time.
//
// # Failures
//
//   - Appended, or DUPLICATE_SEQUENCE_NUMBER (the resend of an appended
//     batch): published.
//   - NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE, UNKNOWN_TOPIC_OR_PARTITION,
//     NOT_ENOUGH_REPLICAS, KAFKA_STORAGE_ERROR (refused before the append),
//     and a request that never reached the broker whole (refused connection,
//     failed write): metadata is refreshed and the same batch is resent once,
//     after 250 ms.
//   - REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS_AFTER_APPEND, and a request
//     whose answer never came (timeout, connection lost after the write):
//     the batch may have been appended. It is resent once with the same
//     sequence numbers (metadata refreshed first after a network error), and
//     the broker's answer to the resend settles it.
//   - MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE: a batch of several messages
//     is split and its messages sent one by one, so that only a message too
//     large by itself fails; INVALID_TOPIC_EXCEPTION, INVALID_RECORD: the
//     batch fails. These wrap outbox.ErrPermanent.
//   - OUT_OF_ORDER_SEQUENCE_NUMBER, UNKNOWN_PRODUCER_ID (the broker's producer
//     state is not ours): the batch is resent once in a new epoch;
//     INVALID_PRODUCER_EPOCH, PRODUCER_FENCED: once under a new producer ID.
//   - Anything else, and a resend that fails again: the batch fails.
//
// A batch whose fate is still unknown then fails with an error that says so
// and wraps neither outbox.ErrPermanent nor outbox.ErrSkipped (each of its
// messages may be on the topic: the relay counts them as possible
// duplicates), and the partition's next batch goes out in a new epoch. That
// is why the epoch moves on: the new epoch starts the partition's sequence
// numbers at 0, which the broker accepts whatever became of the unknown
// batch, and fences any batch of the old epoch still on its way. Without it
// no sequence number is safe: the next one after the unknown batch is
// refused if that batch was lost, and reusing its numbers would let the
// broker take another batch of the same length for a copy of the unknown one
// and drop it. A context that ends while a request is out is handled the
// same way: Publish returns at once, the messages of that request get an
// unknown-outcome error wrapping the context's error, and the request is
// waited for in the background (Close waits for it too) before the partition
// takes its next batch, in a new epoch.
//
// # Errors
//
// Message too large, invalid topic and invalid record wrap
// outbox.ErrPermanent. Connection errors, timeouts, no broker, no leader and
// not enough replicas wrap outbox.ErrUnreachable. Everything else is
// transient. Once a batch failed as unreachable, the call sends no further
// batch and its remaining messages fail as unreachable.
//
// # Time to report an unreachable broker
//
// A broker that refuses connections is reported within about a second. For
// a broker that does not answer, a batch takes at most four network steps,
// each cut by NetTimeout: a leader lookup (only when the cached metadata
// has no leader), the produce request, a metadata refresh, and the resend,
// which goes out only if the refresh succeeded. A blackholed broker (it
// accepts connections, or is already connected, but never answers) costs
// the request and the refresh: 2 × NetTimeout, measured at 6.0 s with the
// default 3 s. The worst case, every step answering or failing just at its
// timeout, is 4 × NetTimeout plus the 250 ms retry backoff, 12.25 s with the
// default, below half the relay's default 30 s lease. A step that must
// connect first and whose dial hangs (a dropped route) fails at NetTimeout
// too; only a dial that succeeds just before its timeout can stretch its
// step by up to one more NetTimeout. A new producer ID, needed only after
// INVALID_PRODUCER_EPOCH or once an epoch's 32767 bumps are used up, adds one
// more step. Calls that share a Publisher and a partition wait for each
// other, so a call's time can add that of the call before it on the same
// partition; the relay's publish deadline bounds the wait, and the waiting
// call sends nothing. Reproduce with
//
//	go test -run TestBlackholeReport -v ./broker/kafka/
package kafka

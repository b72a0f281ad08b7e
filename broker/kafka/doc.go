// Package kafka publishes outbox messages to Kafka with franz-go's kgo
// client, in the wire format of watermill-kafka, so that Watermill Kafka
// subscribers read them as ordinary Watermill messages. docs/kafka.md says
// why each setting is what it is.
//
// # Wire format
//
// A record is what watermill-kafka's DefaultMarshaler writes: the header
// _watermill_message_uuid carries the event ID and comes first, every other
// message header is a header of its own, the key is the message key (none
// when empty) and the value is the payload, byte for byte, uncompressed.
// Keys are hashed as sarama's hash partitioner hashes them (FNV-1a), so a
// key lands in the partition that watermill-kafka and sarama producers pick
// for it; Java clients hash with murmur2 and may place a key elsewhere.
// Topics are created on first use when the broker allows it
// (auto.create.topics.enable), as with watermill-kafka.
//
// # Producer
//
// Idempotent, acks from all in-sync replicas, so a resend after a lost ack
// is dropped by the broker instead of duplicated. A Publish call buffers all
// its records before it sends any, so that when a record fails, the records
// behind it in its partition fail with it and no later record of its key is
// appended before it. Calls run one at a time.
//
// # Errors
//
// Message too large, invalid topic and invalid record wrap
// outbox.ErrPermanent; a batch refused as too large or invalid is sent again
// record by record, so that only the culprit fails. No answer within
// Config.DeliveryTimeout, connection errors, no leader and not enough
// replicas wrap outbox.ErrUnreachable. Everything else is transient. A
// failure after a produce request of the call reached a broker wraps
// outbox.ErrUnknownOutcome, unless the broker's answer refused the batch:
// the relay counts it as a possible duplicate. A refused connection, or a
// call whose requests never went out, reports no unknown outcome.
//
// # Time to report an unreachable broker
//
// A Publish call returns within Config.DeliveryTimeout (10 s by default)
// plus half a second, whatever the broker does: refuses connections,
// accepts them and never answers, or loses its leaders. Records still in
// flight then are abandoned, and the client moves to a new producer epoch
// before it sends again, so an abandoned batch that reaches the broker late
// is refused once a later batch of its partition was appended.
//
// # Transactions
//
// With Config.Transactional, each call is a Kafka transaction that also
// appends a progress record naming its events to Config.ProgressTopic, and
// a consumer that reads with isolation.level=read_committed sees each event
// once (docs/transactions.md). A message with outbox.Message.Reclaimed set
// is first looked up in the committed progress: found, it returns nil and is
// not produced again; not looked up in time, it wraps outbox.ErrInDoubt. A
// failure whose outcome is unknown aborts the transaction, so no error wraps
// outbox.ErrUnknownOutcome. A call never commits after its context's
// deadline.
package kafka

package outboxamqp_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"sync"
	"testing"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker/wmbroker"
	outboxamqp "github.com/outboxkit/outbox/contrib/amqp"
	"github.com/outboxkit/outbox/internal/faulttest"
	"github.com/outboxkit/outbox/internal/testenv"
)

// dial opens a connection of the test's own to the server at u, closed at
// the end of the test.
func dial(t testing.TB, u string) *amqp.Connection {
	t.Helper()
	conn, err := amqp.Dial(u)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

// declare declares a topic of its own, as the publisher's configuration
// does (a consistent-hash exchange on the event key), and n durable queues
// bound to it with weight 1 each, as n consumers would. Both are deleted at
// the end of the test.
func declare(t testing.TB, u string, n int) (topic string, queues []string) {
	t.Helper()
	cfg := outboxamqp.Config(u)
	topic = testenv.Table("outbox_test")
	ch, err := dial(t, u).Channel()
	require.NoError(t, err)
	require.NoError(t, ch.ExchangeDeclare(topic, cfg.Exchange.Type, cfg.Exchange.Durable, false, false, false, cfg.Exchange.Arguments))
	for i := range n {
		q := fmt.Sprintf("%s_%d", topic, i)
		_, err := ch.QueueDeclare(q, cfg.Queue.Durable, false, false, false, nil)
		require.NoError(t, err)
		require.NoError(t, ch.QueueBind(q, cfg.QueueBind.GenerateRoutingKey(topic), topic, false, nil))
		queues = append(queues, q)
	}
	t.Cleanup(func() {
		ch, err := dial(t, u).Channel()
		if err != nil {
			return
		}
		for _, q := range queues {
			_, _ = ch.QueueDelete(q, false, false, false)
		}
		_ = ch.ExchangeDelete(topic, false, false)
	})
	return topic, queues
}

// depth returns the number of ready messages in queue.
func depth(t testing.TB, conn *amqp.Connection, queue string) int {
	t.Helper()
	ch, err := conn.Channel()
	require.NoError(t, err)
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	require.NoError(t, err)
	return q.Messages
}

// consumer reads queues with a connection of its own, independent of the
// publisher's library, for as long as the test runs, and keeps what arrived
// in delivery order (per queue, so per key).
type consumer struct {
	mu       sync.Mutex
	received []faulttest.Received
	queueOf  []string // the queue of each received message
}

func consume(t testing.TB, u string, queues ...string) *consumer {
	t.Helper()
	ch, err := dial(t, u).Channel()
	require.NoError(t, err)
	c := &consumer{}
	var wg sync.WaitGroup
	for _, q := range queues {
		deliveries, err := ch.Consume(q, "", true, true, false, false, nil)
		require.NoError(t, err)
		wg.Go(func() {
			for d := range deliveries {
				c.mu.Lock()
				c.received = append(c.received, received(d))
				c.queueOf = append(c.queueOf, q)
				c.mu.Unlock()
			}
		})
	}
	t.Cleanup(func() { ch.Close(); wg.Wait() })
	return c
}

// Received returns the messages received so far.
func (c *consumer) Received() []faulttest.Received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]faulttest.Received(nil), c.received...)
}

// queuesOfKeys returns, for each key received, the queues its messages came
// from.
func (c *consumer) queuesOfKeys() map[string]map[string]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]map[string]bool{}
	for i, m := range c.received {
		if out[m.Key] == nil {
			out[m.Key] = map[string]bool{}
		}
		out[m.Key][c.queueOf[i]] = true
	}
	return out
}

// received reads a delivery as the checker does: its event ID from the
// HeaderMessageUUID header, its key from the partition_key header.
func received(d amqp.Delivery) faulttest.Received {
	id, _ := d.Headers[outbox.HeaderMessageUUID].(string)
	key, _ := d.Headers[wmbroker.MetadataPartitionKey].(string)
	return faulttest.Received{ID: uuid.MustParse(id), Key: key}
}

// proxy forwards TCP connections from a port of its own to the server, and
// injects the faults a network can: it refuses connections while down, cuts
// the open ones, and holds the bytes of one direction (read, not forwarded)
// until they are let through or cut.
type proxy struct {
	addr, target string

	mu       sync.Mutex
	changed  *sync.Cond
	ln       net.Listener
	conns    map[net.Conn]bool
	held     [2]bool // toServer, toClient
	cutEpoch int     // bytes held before a cut are dropped
	wg       sync.WaitGroup
}

const (
	toServer = 0
	toClient = 1
)

// newProxy starts a proxy to target; it stops at the end of the test.
func newProxy(t testing.TB, target string) *proxy {
	t.Helper()
	p := &proxy{target: target, conns: map[net.Conn]bool{}}
	p.changed = sync.NewCond(&p.mu)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(func() {
		p.Down()
		p.wg.Wait()
	})
	return p
}

// url returns u with the proxy as its server.
func (p *proxy) url(t testing.TB, u string) string {
	t.Helper()
	parsed, err := url.Parse(u)
	require.NoError(t, err)
	parsed.Host = p.addr
	return parsed.String()
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.forward(c) })
		}
	})
}

func (p *proxy) forward(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	p.mu.Lock()
	if p.ln == nil {
		p.mu.Unlock()
		client.Close()
		server.Close()
		return
	}
	p.conns[client], p.conns[server] = true, true
	p.mu.Unlock()
	var wg sync.WaitGroup
	wg.Go(func() { p.pipe(server, client, toServer) })
	wg.Go(func() { p.pipe(client, server, toClient) })
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, client)
	delete(p.conns, server)
	p.mu.Unlock()
}

// pipe copies src to dst, waiting while dir is held; a cut drops what it
// holds. Either side closing closes both, as on a direct connection.
func (p *proxy) pipe(dst, src net.Conn, dir int) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			epoch := p.cutEpoch
			for p.held[dir] && p.cutEpoch == epoch {
				p.changed.Wait()
			}
			cut := p.cutEpoch != epoch
			p.mu.Unlock()
			if cut {
				return
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Hold stops forwarding the bytes of one direction: they are read and kept.
func (p *proxy) Hold(dir int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.held[dir] = true
}

// Cut closes every open connection, dropping the bytes held, and lets the
// next ones through.
func (p *proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	p.held = [2]bool{}
	p.cutEpoch++
	p.changed.Broadcast()
}

// Down cuts every connection and refuses new ones until Up.
func (p *proxy) Down() {
	p.mu.Lock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	p.mu.Unlock()
	p.Cut()
}

// Up accepts connections again, on the same port.
func (p *proxy) Up(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	require.NoError(t, err)
	p.serve(ln)
}

// publishOne publishes m through pub in the background; the result arrives
// on the returned channel.
func publishOne(pub *wmbroker.Publisher, m *outbox.Message) <-chan error {
	done := make(chan error, 1)
	go func() {
		errs := pub.Publish(context.Background(), []*outbox.Message{m})
		if errs == nil {
			done <- nil
			return
		}
		done <- errs[0]
	}()
	return done
}

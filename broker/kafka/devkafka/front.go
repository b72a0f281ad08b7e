package devkafka

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"time"
)

// front is the listener kfake accepts from. It hands kfake connections that
// can drop the responses to produce requests.
type front struct {
	net.Listener
	mu        sync.Mutex
	dropUntil time.Time
}

// listen is kfake's ListenFn; kfake calls it once, at start.
func (f *front) listen(network, address string) (net.Listener, error) {
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	f.Listener = ln
	return f, nil
}

// Accept never fails kfake's loop but when the listener is closed: kfake
// stops serving after an error.
func (f *front) Accept() (net.Conn, error) {
	for {
		nc, err := f.Listener.Accept()
		switch {
		case errors.Is(err, net.ErrClosed):
			return nil, err
		case err != nil:
			// Out of file descriptors and the like: back off rather
			// than spin.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		return &conn{Conn: nc, f: f, produce: map[int32]bool{}}, nil
	}
}

func (f *front) dropProduceUntil(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dropUntil = t
}

func (f *front) droppingProduce() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return time.Now().Before(f.dropUntil)
}

// produceKey is the Kafka API key of Produce requests.
const produceKey = 0

// conn is one client connection as kfake sees it. It parses the request
// stream just enough to know which correlation IDs belong to produce
// requests, because responses carry only the correlation ID.
type conn struct {
	net.Conn
	f       *front
	reqHead []byte // the first bytes of the request being read: size, key, version, correlation ID
	reqLeft int    // bytes of the request being read after reqHead
	mu      sync.Mutex
	produce map[int32]bool // correlation IDs of produce requests not answered yet
}

// requestHeadLen covers a request's size (4), API key (2), version (2) and
// correlation ID (4).
const requestHeadLen = 12

func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.track(p[:n])
	return n, err
}

// track follows request framing. kfake reads one request at a time, so only
// one goroutine is ever in here.
func (c *conn) track(b []byte) {
	for len(b) > 0 {
		if c.reqLeft > 0 {
			k := min(c.reqLeft, len(b))
			c.reqLeft -= k
			b = b[k:]
			continue
		}
		k := min(requestHeadLen-len(c.reqHead), len(b))
		c.reqHead = append(c.reqHead, b[:k]...)
		b = b[k:]
		if len(c.reqHead) < requestHeadLen {
			return
		}
		size := int(binary.BigEndian.Uint32(c.reqHead[0:4]))
		if binary.BigEndian.Uint16(c.reqHead[4:6]) == produceKey {
			corr := int32(binary.BigEndian.Uint32(c.reqHead[8:12]))
			c.mu.Lock()
			c.produce[corr] = true
			c.mu.Unlock()
		}
		c.reqLeft = size - (requestHeadLen - 4)
		c.reqHead = c.reqHead[:0]
	}
}

// Write relies on kfake writing each response, size and correlation ID
// first, with one Write call.
func (c *conn) Write(p []byte) (int, error) {
	if len(p) >= 8 {
		corr := int32(binary.BigEndian.Uint32(p[4:8]))
		c.mu.Lock()
		isProduce := c.produce[corr]
		delete(c.produce, corr)
		c.mu.Unlock()
		if isProduce && c.f.droppingProduce() {
			return len(p), nil
		}
	}
	return c.Conn.Write(p)
}

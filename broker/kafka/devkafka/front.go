package devkafka

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"time"
)

// front is the listener kfake accepts from. kfake keeps one listener for its
// whole life and stops serving when Accept fails, so front survives a Stop:
// it closes the real listener, blocks Accept until Restart, and hands kfake
// connections wrapped with the fault switches. Its Addr stays the same so
// that kfake keeps advertising the same host:port in metadata.
type front struct {
	mu        sync.Mutex
	addr      net.Addr
	ln        net.Listener  // nil while stopped
	wake      chan struct{} // closed when ln changes or the front closes
	closed    bool
	blackhole bool
	dropUntil time.Time
	conns     map[*conn]struct{}
}

// listen is kfake's ListenFn; kfake calls it once, at start.
func (f *front) listen(network, address string) (net.Listener, error) {
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.ln, f.addr = ln, ln.Addr()
	f.mu.Unlock()
	return f, nil
}

func (f *front) Addr() net.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.addr
}

func (f *front) Accept() (net.Conn, error) {
	for {
		f.mu.Lock()
		ln, wake, closed := f.ln, f.wake, f.closed
		f.mu.Unlock()
		switch {
		case closed:
			return nil, net.ErrClosed
		case ln == nil:
			<-wake
			continue
		}
		nc, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				// Out of file descriptors and the like: back off
				// rather than spin, and never fail kfake's loop.
				time.Sleep(10 * time.Millisecond)
			}
			continue
		}
		f.mu.Lock()
		if f.ln != ln {
			// Stopped while accepting: the outage already began.
			f.mu.Unlock()
			nc.Close()
			continue
		}
		c := &conn{Conn: nc, f: f, dead: make(chan struct{}), produce: map[int32]bool{}}
		f.conns[c] = struct{}{}
		f.mu.Unlock()
		return c, nil
	}
}

func (f *front) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.closed = true
		f.stopLocked()
	}
	return nil
}

func (f *front) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopLocked()
}

func (f *front) stopLocked() {
	if f.ln != nil {
		f.ln.Close()
		f.ln = nil
	}
	f.cutLocked()
	close(f.wake)
	f.wake = make(chan struct{})
}

func (f *front) cutLocked() {
	for c := range f.conns {
		c.cut()
	}
	clear(f.conns)
}

func (f *front) restart() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.closed:
		return net.ErrClosed
	case f.ln != nil:
		return nil
	}
	ln, err := net.Listen("tcp", f.addr.String())
	if err != nil {
		return err
	}
	f.ln = ln
	close(f.wake)
	f.wake = make(chan struct{})
	return nil
}

func (f *front) setBlackhole(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.blackhole && !on {
		f.cutLocked()
	}
	f.blackhole = on
}

func (f *front) blackholed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.blackhole
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

func (f *front) forget(c *conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.conns, c)
}

// produceKey is the Kafka API key of Produce requests.
const produceKey = 0

// conn is one client connection as kfake sees it. It parses the request
// stream just enough to know which correlation IDs belong to produce
// requests, because responses carry only the correlation ID.
type conn struct {
	net.Conn
	f       *front
	dead    chan struct{}
	cutOnce sync.Once
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
	if c.f.blackholed() {
		// Swallow the request and never answer; ending the blackhole cuts
		// the connection.
		<-c.dead
		return 0, net.ErrClosed
	}
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
	if c.f.blackholed() {
		<-c.dead
		return 0, net.ErrClosed
	}
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

func (c *conn) Close() error {
	c.f.forget(c)
	c.cut()
	return nil
}

func (c *conn) cut() {
	c.cutOnce.Do(func() {
		close(c.dead)
		c.Conn.Close()
	})
}

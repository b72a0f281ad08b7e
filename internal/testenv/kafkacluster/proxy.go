package kafkacluster

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"strconv"
	"sync"
)

// proxy stands in front of a node's client listener; the node advertises
// the proxy's address, so that every client connection, inter-broker
// replication included, goes through it. It forwards the Kafka protocol
// frame by frame and can lose the requests, or the responses to them, of a
// chosen kind, as a network that drops the answer after the broker acted.
type proxy struct {
	addr   string
	target string

	mu sync.Mutex
	// ln is nil while the node is down: connections are refused then,
	// as the node's own port refuses them.
	ln net.Listener
	// loseRequest and loseResponse hold the armed faults by API key.
	loseRequest, loseResponse map[int16]*fault
	conns                     map[net.Conn]bool
	closed                    bool
}

// fault loses the frames of one kind until it is disarmed; lost is closed
// at the first.
type fault struct {
	lost chan struct{}
	once sync.Once
}

func (f *fault) hit() { f.once.Do(func() { close(f.lost) }) }

// newProxy returns a proxy to target on port, which it listens on once the
// node serves (up).
func newProxy(port int, target string) *proxy {
	return &proxy{addr: "127.0.0.1:" + strconv.Itoa(port), target: target, loseRequest: map[int16]*fault{},
		loseResponse: map[int16]*fault{}, conns: map[net.Conn]bool{}}
}

func (p *proxy) port() int {
	_, port, _ := net.SplitHostPort(p.addr)
	n, _ := strconv.Atoi(port)
	return n
}

// down closes the listener and every connection: the node is going away,
// and its clients find it refusing connections, not accepting and closing
// them.
func (p *proxy) down() {
	p.mu.Lock()
	ln, conns := p.ln, p.conns
	p.ln, p.conns = nil, map[net.Conn]bool{}
	p.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	for c := range conns {
		c.Close()
	}
}

// up listens, on the proxy's address, once the node serves.
func (p *proxy) up() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil || p.closed {
		return nil
	}
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		return err
	}
	p.ln = ln
	go p.accept(ln)
	return nil
}

func (p *proxy) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.down()
}

// arm makes the proxy lose the requests of kind key (response false) or
// the responses to them (response true) until restore is called; lost is
// closed at the first.
func (p *proxy) arm(key int16, response bool) (lost <-chan struct{}, restore func()) {
	f := &fault{lost: make(chan struct{})}
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.faults(response)
	m[key] = f
	return f.lost, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if m[key] == f {
			delete(m, key)
		}
	}
}

func (p *proxy) faults(response bool) map[int16]*fault {
	if response {
		return p.loseResponse
	}
	return p.loseRequest
}

// armed returns the fault armed for key, if any.
func (p *proxy) armed(key int16, response bool) *fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.faults(response)[key]
}

// track registers a connection to close with the proxy; false when the
// proxy is closed.
func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = true
	return true
}

func (p *proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
		c.Close()
	}
}

func (p *proxy) accept(ln net.Listener) {
	for {
		client, err := ln.Accept()
		if err != nil {
			return
		}
		go p.serve(client)
	}
}

// serve forwards one client connection.
func (p *proxy) serve(client net.Conn) {
	if !p.track(client) {
		client.Close()
		return
	}
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		p.untrack(client)
		return
	}
	if !p.track(server) {
		p.untrack(client)
		server.Close()
		return
	}
	defer p.untrack(client, server)
	var mu sync.Mutex
	keys := map[int32]int16{} // API key of each request in flight, by correlation ID
	// lost is closed once a frame was lost: nothing more goes through the
	// connection until it closes, as after a dropped route.
	lost := make(chan struct{})
	var loseOnce sync.Once
	loseHere := func(f *fault) {
		loseOnce.Do(func() { close(lost) })
		f.hit()
	}
	done := make(chan struct{}, 2)
	go func() { // client to node
		defer func() { done <- struct{}{} }()
		forwardFrames(client, server, lost, func(frame []byte) bool {
			if len(frame) < 12 {
				return true
			}
			key := int16(binary.BigEndian.Uint16(frame[4:6]))
			corr := int32(binary.BigEndian.Uint32(frame[8:12]))
			if f := p.armed(key, false); f != nil {
				loseHere(f)
				return false
			}
			mu.Lock()
			keys[corr] = key
			mu.Unlock()
			return true
		})
	}()
	go func() { // node to client
		defer func() { done <- struct{}{} }()
		forwardFrames(server, client, lost, func(frame []byte) bool {
			if len(frame) < 8 {
				return true
			}
			corr := int32(binary.BigEndian.Uint32(frame[4:8]))
			mu.Lock()
			key, ok := keys[corr]
			delete(keys, corr)
			mu.Unlock()
			if !ok {
				return true
			}
			if f := p.armed(key, true); f != nil {
				loseHere(f)
				return false
			}
			return true
		})
	}()
	<-done // either side closed: close both
}

// forwardFrames copies length-prefixed frames from src to dst while pass
// lets them through. Once lost is closed it only reads and discards, so
// that the connection stays open until either end closes it.
func forwardFrames(src io.Reader, dst io.Writer, lost <-chan struct{}, pass func(frame []byte) bool) {
	r := bufio.NewReader(src)
	var size [4]byte
	for {
		if _, err := io.ReadFull(r, size[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(size[:])
		frame := make([]byte, 4+int(n))
		copy(frame, size[:])
		if _, err := io.ReadFull(r, frame[4:]); err != nil {
			return
		}
		select {
		case <-lost:
			continue
		default:
		}
		if !pass(frame) {
			continue
		}
		if _, err := dst.Write(frame); err != nil {
			return
		}
	}
}

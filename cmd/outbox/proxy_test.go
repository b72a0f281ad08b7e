package main

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox/internal/testenv"
)

// proxy forwards TCP connections from an address of its own to a server. It
// stands for a server that comes up late (the shared servers' ports cannot
// move), and tells the server's connections that came through it apart
// from all others: the server sees them coming from the proxy's ports.
type proxy struct {
	addr, target string

	mu       sync.Mutex
	ln       net.Listener
	upstream map[net.Conn]bool // open connections to the server
	closed   bool
	wg       sync.WaitGroup
}

// newProxy reserves a free port on 127.0.0.1 for a proxy to target; nothing
// listens on it until start. It stops at the end of the test.
func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePorts(t, 1)[0])
	p := &proxy{addr: addr, target: target, upstream: map[net.Conn]bool{}}
	t.Cleanup(p.close)
	return p
}

// start listens on the proxy's address and forwards from now on.
func (p *proxy) start(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	require.NoError(t, err)
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

func (p *proxy) forward(down net.Conn) {
	defer down.Close()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer up.Close()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.upstream[up] = true
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.upstream, up)
		p.mu.Unlock()
	}()
	// Whichever side closes first closes both, as a direct connection
	// would be closed.
	go func() {
		_, _ = io.Copy(up, down)
		up.Close()
		down.Close()
	}()
	_, _ = io.Copy(down, up)
	down.Close()
}

// ports returns the local ports of the open connections to the server.
func (p *proxy) ports() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []int
	for c := range p.upstream {
		out = append(out, c.LocalAddr().(*net.TCPAddr).Port)
	}
	return out
}

func (p *proxy) close() {
	p.mu.Lock()
	p.closed = true
	if p.ln != nil {
		p.ln.Close()
	}
	for c := range p.upstream {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// serverAddr is the address of the fixture's database server.
func (f *fixture) serverAddr(t *testing.T) string {
	t.Helper()
	if f.dialect == "mysql" {
		cfg, err := gomysql.ParseDSN(f.dsn)
		require.NoError(t, err)
		return cfg.Addr
	}
	u, err := url.Parse(f.dsn)
	require.NoError(t, err)
	return u.Host
}

// dsnAt is the fixture's DSN with the server at addr.
func (f *fixture) dsnAt(t *testing.T, addr string) string {
	t.Helper()
	if f.dialect == "mysql" {
		cfg, err := gomysql.ParseDSN(f.dsn)
		require.NoError(t, err)
		cfg.Addr = addr
		return cfg.FormatDSN()
	}
	u, err := url.Parse(f.dsn)
	require.NoError(t, err)
	u.Host = addr
	return u.String()
}

// kill closes on the server, as an administrator would, the connections that
// come from ports (pg_terminate_backend, KILL CONNECTION), and returns how
// many it closed.
func (f *fixture) kill(t *testing.T, ports []int) int {
	t.Helper()
	from := map[string]bool{}
	for _, p := range ports {
		from[strconv.Itoa(p)] = true
	}
	q := "SELECT pid, client_port::text FROM pg_stat_activity WHERE client_port IS NOT NULL"
	stmt := "SELECT pg_terminate_backend($1)"
	if f.dialect == "mysql" {
		q = "SELECT ID, HOST FROM information_schema.PROCESSLIST"
		stmt = "KILL CONNECTION ?"
	}
	var ids []int64
	rows, err := f.db.QueryContext(t.Context(), q)
	require.NoError(t, err)
	for rows.Next() {
		var id int64
		var host sql.NullString
		require.NoError(t, rows.Scan(&id, &host))
		if from[host.String[strings.LastIndexByte(host.String, ':')+1:]] {
			ids = append(ids, id)
		}
	}
	require.NoError(t, rows.Err())
	killed := 0
	for _, id := range ids {
		var closed bool
		if f.dialect == "mysql" {
			_, err := f.db.ExecContext(context.Background(), stmt, id)
			var myErr *gomysql.MySQLError
			if !errors.As(err, &myErr) || myErr.Number != 1094 { // unknown thread: it closed meanwhile
				require.NoError(t, err)
				closed = true
			}
		} else {
			require.NoError(t, f.db.QueryRowContext(context.Background(), stmt, id).Scan(&closed))
		}
		if closed {
			killed++
		}
	}
	return killed
}

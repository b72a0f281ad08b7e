package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxkit/outbox/broker/kafka"
	"github.com/outboxkit/outbox/relay"
	"github.com/outboxkit/outbox/store/postgres"
)

// The binary runs as a relay child process when childEnv is set; the other
// variables say where.
const (
	childEnv       = "OUTBOX_BENCH_CHILD"
	childPGEnv     = "OUTBOX_BENCH_PG"
	childTableEnv  = "OUTBOX_BENCH_TABLE"
	childBrokerEnv = "OUTBOX_BENCH_BROKER"
	childNotifyEnv = "OUTBOX_BENCH_NOTIFY"
)

// runChild runs one relay, as a separate deployment would, until SIGTERM.
// It prints "ready" once it runs.
func runChild() error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	pool, err := pgxpool.New(ctx, os.Getenv(childPGEnv))
	if err != nil {
		return err
	}
	defer pool.Close()
	st, err := postgres.New(pool, postgres.Config{Table: os.Getenv(childTableEnv), Notify: os.Getenv(childNotifyEnv) != ""})
	if err != nil {
		return err
	}
	pub, err := kafka.New(publisherConfig(os.Getenv(childBrokerEnv)))
	if err != nil {
		return err
	}
	defer pub.Close()
	r, err := relay.New(st, pub, relayConfig(fmt.Sprint("bench-child-", os.Getpid()), false))
	if err != nil {
		return err
	}
	fmt.Println("ready")
	return r.Run(ctx)
}

// child is a running relay child process.
type child struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startChild re-executes this binary as a relay on table and waits until it
// is ready. With notify its store listens for the writers' NOTIFY.
func startChild(ctx context.Context, e *env, table string, notify bool) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"=relay", childPGEnv+"="+e.o.pgURL,
		childTableEnv+"="+table, childBrokerEnv+"="+e.kafkaAddr)
	if notify {
		cmd.Env = append(cmd.Env, childNotifyEnv+"=1")
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "ready" {
				close(ready)
			}
		}
		_ = cmd.Wait()
	}()
	select {
	case <-ready:
		return c, nil
	case <-c.done:
		return nil, errors.New("child relay exited before it was ready")
	case <-ctx.Done():
		c.kill()
		return nil, ctx.Err()
	case <-time.After(30 * time.Second):
		c.kill()
		return nil, errors.New("child relay not ready after 30s")
	}
}

// peakRSS returns the child's VmHWM, its peak resident set size.
func (c *child) peakRSS() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("no VmHWM in /proc status")
}

// stop asks the child to shut down and waits for it, killing it after 15s.
func (c *child) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		c.kill()
	}
}

func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	<-c.done
}

// benchRSS drains a backlog of e.o.rssEvents events with a relay in a child
// process and reports the child's peak RSS.
func benchRSS(ctx context.Context, e *env, t *table) error {
	n := e.o.rssEvents
	logf("rss: loading %d events", n)
	ot, err := e.outboxTable(ctx, "PostgreSQL")
	if err != nil {
		return err
	}
	defer ot.drop()
	topic, err := e.topic(ctx)
	if err != nil {
		return err
	}
	tr := newTracker()
	if err := preload(ctx, ot, topic, n, e.o.keys, tr); err != nil {
		return err
	}
	c, err := startConsumer(ctx, e.kafkaAddr, topic, tr)
	if err != nil {
		return err
	}
	defer c.close()
	logf("rss: relaying with a child process")
	start := time.Now()
	ch, err := startChild(ctx, e, ot.table, false)
	if err != nil {
		return err
	}
	defer ch.stop()
	if err := await(ctx, tr.arm(n), drainTimeout(n)); err != nil {
		return fmt.Errorf("%w (%v)", err, tr.report())
	}
	rss, err := ch.peakRSS()
	if err != nil {
		return err
	}
	tr.mu.Lock()
	rate := float64(n) / tr.lastAt.Sub(start).Seconds()
	tr.mu.Unlock()
	t.add("memory", fmt.Sprintf("relay process peak RSS (VmHWM), %d backlog", n),
		fmt.Sprintf("%.1f MB  (drained at %.0f events/s incl. process start)", float64(rss)/1e6, rate),
		"≤ 50 MB", check(rss <= 50e6))
	return nil
}

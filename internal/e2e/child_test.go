package e2e_test

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker"
	"github.com/outboxkit/outbox/broker/kafka"
	"github.com/outboxkit/outbox/internal/faulttest"
	"github.com/outboxkit/outbox/relay"
	"github.com/outboxkit/outbox/store"
	"github.com/outboxkit/outbox/store/mysql"
	"github.com/outboxkit/outbox/store/postgres"
)

// The test binary runs as a relay child process when this variable is set.
const childEnv = "OUTBOX_E2E_RELAY_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		if err := childRelay(); err != nil {
			fmt.Fprintln(os.Stderr, "child relay:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// childRelay runs a relay from the environment until SIGTERM. Before each
// publish, and after it before its outcome is recorded, it prints "dups N",
// its possible-duplicate counter, so the parent knows every duplicate this
// process counted before it could have caused one, even if it is SIGKILLed
// right after: a re-claimed event is counted before the publish, an unknown
// outcome before the store hears of it.
func childRelay() error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	st, closeStore, err := openStore(ctx, os.Getenv("E2E_DIALECT"), os.Getenv("E2E_TABLE"))
	if err != nil {
		return err
	}
	defer closeStore()
	kp, err := kafka.New(kafka.Config{Brokers: strings.Split(os.Getenv("E2E_BROKERS"), ",")})
	if err != nil {
		return err
	}
	defer kp.Close()
	var pub broker.Publisher = kp
	if rate, _ := strconv.ParseFloat(os.Getenv("E2E_FAIL_RATE"), 64); rate > 0 {
		pub = faulttest.NewFlaky(kp, rate, uint64(os.Getpid()))
	}
	rep := &dupReporter{}
	cfg := childConfig()
	cfg.Owner = fmt.Sprint("child-", os.Getpid())
	cfg.Tracer = rep
	r, err := relay.New(st, pub, cfg)
	if err != nil {
		return err
	}
	rep.r = r
	fmt.Println("ready")
	err = r.Run(ctx)
	rep.report()
	return err
}

// openStore opens the child's store: MySQL/MariaDB at OUTBOX_MYSQL_DSN for
// dialect "mysql", else PostgreSQL at OUTBOX_POSTGRES_URL.
func openStore(ctx context.Context, dialect, table string) (store.Store, func(), error) {
	if dialect == "mysql" {
		db, err := sql.Open("mysql", os.Getenv("OUTBOX_MYSQL_DSN"))
		if err != nil {
			return nil, nil, err
		}
		st, err := mysql.New(db, mysql.Config{Table: table})
		return st, func() { db.Close() }, err
	}
	pool, err := pgxpool.New(ctx, os.Getenv("OUTBOX_POSTGRES_URL"))
	if err != nil {
		return nil, nil, err
	}
	st, err := postgres.New(pool, postgres.Config{Table: table})
	return st, pool.Close, err
}

func childConfig() relay.Config {
	return relay.Config{
		BatchSize:          200,
		PollInterval:       20 * time.Millisecond,
		Lease:              2 * time.Second,
		ErrorRetryInterval: 10 * time.Millisecond,
		MaxBackoff:         200 * time.Millisecond,
		MaxRetries:         1000,
	}
}

type dupReporter struct{ r *relay.Relay }

func (d *dupReporter) report() {
	fmt.Printf("dups %d\n", d.r.Stats().PossibleDuplicates)
}

func (d *dupReporter) TracePublishStart(ctx context.Context, _ outbox.TracePublishStartData) context.Context {
	d.report() // os.Stdout is unbuffered: the line is out before the publish
	return ctx
}

func (d *dupReporter) TracePublishEnd(context.Context, outbox.TracePublishEndData) {
	d.report() // the relay counted this publish's unknown outcomes; the store has not heard of them
}

// child is a running relay child process.
type child struct {
	cmd     *exec.Cmd
	dups    atomic.Int64
	reports atomic.Int64 // "dups" lines: two per publish, one at exit
	done    chan struct{}
}

// startChild starts a relay process and waits until it is ready.
func startChild(t *testing.T, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{childEnv + "=1"}, env...)...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if line == "ready" {
				close(ready)
			} else if n, ok := strings.CutPrefix(line, "dups "); ok {
				v, _ := strconv.ParseInt(n, 10, 64)
				c.dups.Store(v)
				c.reports.Add(1)
			}
		}
		_ = cmd.Wait()
	}()
	select {
	case <-ready:
	case <-c.done:
		t.Fatal("child relay exited before it was ready")
	case <-time.After(30 * time.Second):
		t.Fatal("child relay not ready after 30s")
	}
	t.Cleanup(func() { c.signal(syscall.SIGKILL) })
	return c
}

// signal sends sig and waits for the process to exit.
func (c *child) signal(sig syscall.Signal) {
	_ = c.cmd.Process.Signal(sig)
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// counted sums the duplicate counters of children, dead or alive.
func counted(children []*child) int64 {
	var n int64
	for _, c := range children {
		n += c.dups.Load()
	}
	return n
}

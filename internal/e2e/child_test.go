package e2e_test

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"slices"
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
	"github.com/outboxkit/outbox/store/sqlite"
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
// outcome before the store hears of it. After a publish the broker accepted
// messages of, it also prints "published", so that the parent can kill it
// between the publish and the mark.
func childRelay() error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	st, closeStore, err := openStore(ctx, os.Getenv("E2E_DIALECT"), os.Getenv("E2E_TABLE"))
	if err != nil {
		return err
	}
	defer closeStore()
	kc := kafka.Config{Brokers: strings.Split(os.Getenv("E2E_BROKERS"), ",")}
	if id := os.Getenv("E2E_TXN_ID"); id != "" {
		kc = transactional(kc, id, os.Getenv("E2E_PROGRESS"))
	}
	kp, err := kafka.New(kc)
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
// dialect "mysql", the SQLite file E2E_SQLITE_PATH for "sqlite", else
// PostgreSQL at OUTBOX_POSTGRES_URL.
func openStore(ctx context.Context, dialect, table string) (store.Store, func(), error) {
	if dialect == "sqlite" {
		db, err := sqlite.Open(os.Getenv("E2E_SQLITE_PATH"))
		if err != nil {
			return nil, nil, err
		}
		st, err := sqlite.New(db, sqlite.Config{Table: table})
		return st, func() { db.Close() }, err
	}
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
	fmt.Println("publishing")
	return ctx
}

func (d *dupReporter) TracePublishEnd(_ context.Context, data outbox.TracePublishEndData) {
	d.report() // the relay counted this publish's unknown outcomes; the store has not heard of them
	if data.Errs == nil || slices.Contains(data.Errs, nil) {
		fmt.Println("published")
	}
}

// child is a running relay child process.
type child struct {
	cmd  *exec.Cmd
	dups atomic.Int64
	done chan struct{}
	// published receives a value when the child has published a batch
	// and not recorded it yet, publishing when it starts to publish one
	// (if nobody waits, the value is dropped).
	published, publishing chan struct{}
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
	c := &child{cmd: cmd, done: make(chan struct{}), published: make(chan struct{}), publishing: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if line == "ready" {
				close(ready)
			} else if line == "published" || line == "publishing" {
				ch := c.published
				if line == "publishing" {
					ch = c.publishing
				}
				select {
				case ch <- struct{}{}:
				default:
				}
			} else if n, ok := strings.CutPrefix(line, "dups "); ok {
				v, _ := strconv.ParseInt(n, 10, 64)
				c.dups.Store(v)
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

// publishWait bounds the wait for a child's next publish. In transactional
// mode a child may first wait for the coordinator to abort a killed
// predecessor's transaction (its timeout, then the broker's cleanup pass,
// every 10 s by default), which a loaded machine stretches.
const publishWait = 3 * time.Minute

// killAfterPublish SIGKILLs the child right after it published a batch,
// before it can record it: the batch's events are reclaimed by the next
// relay, which must not publish them again in transactional mode. It waits
// up to publishWait for a publish.
func (c *child) killAfterPublish(t *testing.T) {
	t.Helper()
	select {
	case <-c.published:
	case <-time.After(publishWait):
		t.Fatalf("the child published nothing within %v", publishWait)
	}
	c.signal(syscall.SIGKILL)
}

// stopInPublish stops the child (SIGSTOP) as it starts to publish a batch,
// waiting up to publishWait for one; cont continues it.
func (c *child) stopInPublish(t *testing.T) (cont func()) {
	t.Helper()
	select {
	case <-c.publishing:
	case <-time.After(publishWait):
		t.Fatalf("the child published nothing within %v", publishWait)
	}
	_ = c.cmd.Process.Signal(syscall.SIGSTOP)
	return func() { _ = c.cmd.Process.Signal(syscall.SIGCONT) }
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

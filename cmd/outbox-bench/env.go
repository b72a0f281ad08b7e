package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "github.com/go-sql-driver/mysql" // database/sql driver "mysql"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker/kafka/devkafka"
	"github.com/outboxkit/outbox/migrations"
	"github.com/outboxkit/outbox/store/mysql"
	"github.com/outboxkit/outbox/store/postgres"
	"github.com/outboxkit/outbox/store/sqlite"
)

// partitions of every benchmark topic.
const partitions = 4

// env holds the shared services of a run.
type env struct {
	o    *options
	pg   *pgxpool.Pool
	my   *sql.DB // nil when MariaDB is skipped or unavailable
	lite *sql.DB // SQLite in a file of the run's own; nil when skipped
	// liteDir holds lite's file; removed by close.
	liteDir string
	kafka   *devkafka.Broker // nil with -kafka
	// kafkaAddr is the broker every scenario uses: -kafka, else devkafka.
	kafkaAddr string
	admin     *kadm.Client
	// drainOneRelay is the rate of the 1-relay PostgreSQL drain, which the
	// 3-relay drain must match (within 5%, the run-to-run noise).
	drainOneRelay float64
}

func newEnv(ctx context.Context, o *options) (*env, error) {
	e := &env{o: o}
	cfg, err := pgxpool.ParseConfig(o.pgURL)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = 32
	if e.pg, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, err
	}
	if err := e.pg.Ping(ctx); err != nil {
		e.close()
		return nil, fmt.Errorf("PostgreSQL: %w", err)
	}
	if o.mysqlDSN != "" && (o.on("mysql") || len(o.only) == 0) {
		db, err := sql.Open("mysql", o.mysqlDSN)
		if err == nil {
			err = db.PingContext(ctx)
		}
		if err != nil {
			logf("MariaDB unavailable, skipped: %v", err)
		} else {
			db.SetMaxOpenConns(32)
			db.SetMaxIdleConns(32)
			e.my = db
		}
	}
	if o.on("sqlite") {
		if e.liteDir, err = os.MkdirTemp("", "outbox-bench-"); err != nil {
			e.close()
			return nil, err
		}
		if e.lite, err = sqlite.Open(filepath.Join(e.liteDir, "bench.db")); err != nil {
			e.close()
			return nil, err
		}
	}
	e.kafkaAddr = o.kafka
	if e.kafkaAddr == "" {
		if e.kafka, err = devkafka.New(devkafka.Config{Partitions: partitions}); err != nil {
			e.close()
			return nil, err
		}
		e.kafkaAddr = e.kafka.Addr()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.kafkaAddr))
	if err != nil {
		e.close()
		return nil, err
	}
	e.admin = kadm.NewClient(cl)
	return e, nil
}

// onKafka returns a copy of e whose scenarios use the broker at addr, and a
// function that closes its admin client; an error if addr is unreachable.
func (e *env) onKafka(ctx context.Context, addr string) (*env, func(), error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return nil, nil, err
	}
	admin := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := admin.ApiVersions(ctx); err != nil {
		admin.Close()
		return nil, nil, err
	}
	other := *e
	other.kafka, other.kafkaAddr, other.admin = nil, addr, admin
	return &other, admin.Close, nil
}

func (e *env) close() {
	if e.admin != nil {
		e.admin.Close()
	}
	if e.kafka != nil {
		e.kafka.Close()
	}
	if e.my != nil {
		e.my.Close()
	}
	if e.lite != nil {
		e.lite.Close()
	}
	if e.liteDir != "" {
		os.RemoveAll(e.liteDir)
	}
	if e.pg != nil {
		e.pg.Close()
	}
}

// fresh returns a new name for a table or topic: prefix plus random hex.
func fresh(prefix string) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return prefix + "_" + hex.EncodeToString(b[:])
}

// topic creates a fresh topic, so that consumers find it at once, and waits
// until every partition's leader serves it: a broker such as Apache Kafka
// names leaders a while after it created the topic, and the first events of
// a run would wait for them (p99 of 250–350 ms in a steady run).
func (e *env) topic(ctx context.Context) (string, error) {
	name := fresh("bench")
	resp, err := e.admin.CreateTopic(ctx, partitions, 1, nil, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return name, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		offsets, err := e.admin.ListEndOffsets(ctx, name)
		if err == nil && offsets.Error() == nil {
			led := 0
			offsets.Each(func(kadm.ListedOffset) { led++ })
			if led == partitions {
				return name, nil
			}
		}
		select {
		case <-ctx.Done():
			return name, fmt.Errorf("topic %s: partitions without a leader: %w", name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// pgStore migrates a fresh outbox table and returns its store; drop removes
// the table.
// quiesce checkpoints PostgreSQL and lets the machine settle before a
// measured run, ours or the forwarder's alike, so that no run pays for the
// writes of the one before it (the dirty pages of a backlog just loaded or a
// table just dropped, flushed by a checkpoint in the middle of the run).
func (e *env) quiesce(ctx context.Context) {
	if _, err := e.pg.Exec(ctx, "CHECKPOINT"); err != nil {
		logf("CHECKPOINT: %v (measuring without it)", err)
	}
	time.Sleep(500 * time.Millisecond)
}

func (e *env) pgStore(ctx context.Context) (st *postgres.Store, drop func(), err error) {
	table := fresh("bench_outbox")
	db := stdlib.OpenDBFromPool(e.pg)
	defer db.Close()
	if err := migrations.Up(ctx, db, migrations.PostgreSQL, table); err != nil {
		return nil, nil, err
	}
	drop = func() {
		ctx := context.Background()
		_, _ = e.pg.Exec(ctx, "DROP TABLE IF EXISTS "+table+", "+migrations.ClaimsTable(table))
		_, _ = e.pg.Exec(ctx, "DELETE FROM outbox_migrations WHERE table_name = $1", table)
	}
	st, err = postgres.New(e.pg, postgres.Config{Table: table})
	if err != nil {
		drop()
		return nil, nil, err
	}
	return st, drop, nil
}

func (e *env) myStore(ctx context.Context) (st *mysql.Store, drop func(), err error) {
	table := fresh("bench_outbox")
	if err := migrations.Up(ctx, e.my, migrations.MySQL, table); err != nil {
		return nil, nil, err
	}
	drop = func() {
		ctx := context.Background()
		_, _ = e.my.ExecContext(ctx, "DROP TABLE IF EXISTS "+table+", "+migrations.ClaimsTable(table))
		_, _ = e.my.ExecContext(ctx, "DELETE FROM outbox_migrations WHERE table_name = ?", table)
	}
	st, err = mysql.New(e.my, mysql.Config{Table: table})
	if err != nil {
		drop()
		return nil, nil, err
	}
	return st, drop, nil
}

func (e *env) liteStore(ctx context.Context) (st *sqlite.Store, drop func(), err error) {
	table := fresh("bench_outbox")
	if err := migrations.Up(ctx, e.lite, migrations.SQLite, table); err != nil {
		return nil, nil, err
	}
	drop = func() {
		ctx := context.Background()
		_, _ = e.lite.ExecContext(ctx, "DROP TABLE IF EXISTS "+table)
		_, _ = e.lite.ExecContext(ctx, "DROP TABLE IF EXISTS "+migrations.ClaimsTable(table))
		_, _ = e.lite.ExecContext(ctx, "DELETE FROM outbox_migrations WHERE table_name = ?", table)
	}
	st, err = sqlite.New(e.lite, sqlite.Config{Table: table})
	if err != nil {
		drop()
		return nil, nil, err
	}
	return st, drop, nil
}

// businessTable creates a fresh table for the business rows of the write and
// steady runs; drop removes it.
func (e *env) pgBusinessTable(ctx context.Context) (string, func(), error) {
	name := fresh("bench_orders")
	_, err := e.pg.Exec(ctx, `CREATE TABLE `+name+` (id BIGSERIAL PRIMARY KEY, customer TEXT NOT NULL,
		amount BIGINT NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now())`)
	return name, func() { _, _ = e.pg.Exec(context.Background(), "DROP TABLE IF EXISTS "+name) }, err
}

func (e *env) myBusinessTable(ctx context.Context) (string, func(), error) {
	name := fresh("bench_orders")
	_, err := e.my.ExecContext(ctx, `CREATE TABLE `+name+` (id BIGINT AUTO_INCREMENT PRIMARY KEY,
		customer VARCHAR(100) NOT NULL, amount BIGINT NOT NULL, created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))`)
	return name, func() { _, _ = e.my.ExecContext(context.Background(), "DROP TABLE IF EXISTS "+name) }, err
}

func (e *env) liteBusinessTable(ctx context.Context) (string, func(), error) {
	name := fresh("bench_orders")
	_, err := e.lite.ExecContext(ctx, `CREATE TABLE `+name+` (id INTEGER PRIMARY KEY AUTOINCREMENT,
		customer TEXT NOT NULL, amount INTEGER NOT NULL, created_at INTEGER NOT NULL DEFAULT (unixepoch()))`)
	return name, func() { _, _ = e.lite.ExecContext(context.Background(), "DROP TABLE IF EXISTS "+name) }, err
}

// order is the business data of the benchmark's events.
type order struct {
	OrderID  string `json:"order_id"`
	Customer string `json:"customer"`
	Amount   int    `json:"amount"`
	Currency string `json:"currency"`
	Note     string `json:"note"`
}

// note pads the envelopes to about 300 bytes.
var note = strings.Repeat("x", 28)

// newEvent returns an event of about 300 bytes of envelope JSON for key.
func newEvent(topic, key string, i int) (outbox.Event, error) {
	env := outbox.Envelope[order]{
		EventType:      "bench.order.created.v1",
		EventTimestamp: time.Now().UTC(),
		SourceService:  "outbox-bench",
		Data:           order{OrderID: fmt.Sprint("order-", i), Customer: key, Amount: i % 10000, Currency: "EUR", Note: note},
	}
	return env.Event(topic, "order", key)
}

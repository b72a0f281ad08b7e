// Command outbox-bench measures the outbox against the machine it runs on and
// against Watermill's forwarder, in one run, on the same PostgreSQL, MariaDB
// and Kafka broker (the in-process devkafka, or Apache Kafka with -kafka),
// and prints one table:
//
//  1. write overhead: a business transaction with and without one outbox
//     event, 1 and 8 writers (PostgreSQL and MariaDB);
//  2. drain: a pre-loaded backlog relayed to Kafka and consumed back by an
//     independent client (franz-go), checking count, duplicates and per-key
//     order; hot-key, 3-relay and publish-and-delete variants;
//  3. steady latency: writers commit at a fixed rate while a relay runs, in
//     the same process (in-process wake) and in another process;
//  4. the same drain and steady runs through Watermill's forwarder
//     (watermill-sql + components/forwarder + watermill-kafka), with the
//     configuration its documentation shows and tuned;
//  5. the peak RSS of a relay process draining a large backlog.
//
// The 1-relay drain and the in-process steady run are repeated against the
// Apache Kafka broker of -real-kafka (OUTBOX_KAFKA_BROKERS, else
// 127.0.0.1:9092) when it can be reached. Every scenario uses a fresh table
// (dropped afterwards) and a fresh topic. Before each measured scenario the
// program prints the machine's 1-minute load average (after waiting up to
// 20 s for the load of the previous scenario to decay); a scenario that
// started above -max-load is measured again, at most -repeats times, and the
// table keeps the run that started at the lowest load, in its LOAD column.
// See docs/BENCHMARKS.md for a recorded run.
//
//	go run ./cmd/outbox-bench          # defaults, a few minutes
//	go run ./cmd/outbox-bench -quick   # small N, under a minute
//	go run ./cmd/outbox-bench -kafka 127.0.0.1:9092 -transactional -only drain,steady
//	                                   # relays in Kafka transactions
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"time"
)

type options struct {
	quick      bool
	pgURL      string
	mysqlDSN   string
	kafka      string        // broker address; empty starts devkafka
	events     int           // drain backlog
	keys       int           // drain keys
	writes     int           // transactions per write-overhead run
	rate       int           // steady events/s
	duration   time.Duration // steady run
	rssEvents  int           // backlog of the RSS run
	only       map[string]bool
	cpuprofile string
	// realKafka is the Apache Kafka broker that the drain and steady runs
	// are repeated against, beside the broker of the run; "" for none.
	realKafka string
	// maxLoad and repeats are the load guard (see measured).
	maxLoad float64
	repeats int
}

func (o *options) on(section string) bool { return len(o.only) == 0 || o.only[section] }

// sections are the parts of the run that -only selects.
var sections = []string{"write", "drain", "steady", "forwarder", "rss", "mysql", "sqlite"}

func main() {
	if os.Getenv(childEnv) != "" {
		if err := runChild(); err != nil {
			fmt.Fprintln(os.Stderr, "outbox-bench child:", err)
			os.Exit(1)
		}
		return
	}
	var o options
	var only string
	flag.BoolVar(&o.quick, "quick", false, "small N and short runs (under a minute)")
	flag.StringVar(&o.pgURL, "pg", getenv("OUTBOX_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"), "PostgreSQL URL")
	flag.StringVar(&o.mysqlDSN, "mysql", getenv("OUTBOX_MYSQL_DSN", "root@tcp(127.0.0.1:3306)/test?interpolateParams=true"), "MariaDB/MySQL DSN; empty skips MariaDB")
	flag.StringVar(&o.kafka, "kafka", "", "address of an Apache Kafka broker to use instead of the in-process devkafka")
	flag.IntVar(&o.events, "n", 50_000, "events in the drain backlog")
	flag.IntVar(&o.keys, "keys", 1000, "keys in the drain backlog")
	flag.IntVar(&o.writes, "writes", 5000, "transactions per write-overhead run")
	flag.IntVar(&o.rate, "rate", 1000, "steady run: events committed per second")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "steady run: how long writers commit")
	flag.IntVar(&o.rssEvents, "rss-n", 100_000, "events in the backlog of the peak-RSS run")
	flag.StringVar(&only, "only", "", "comma-separated sections to run: "+strings.Join(sections, ","))
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of this process to the file")
	flag.StringVar(&o.realKafka, "real-kafka", getenv("OUTBOX_KAFKA_BROKERS", "127.0.0.1:9092"),
		"Apache Kafka broker to repeat the 1-relay drain and the in-process steady run against, beside devkafka; empty skips, and so does a broker that cannot be reached")
	flag.Float64Var(&o.maxLoad, "max-load", 1.5, "a measured run that starts above this 1-minute load average is repeated")
	flag.IntVar(&o.repeats, "repeats", 2, "how many times at most a measured run is repeated because of the load")
	txn := flag.Bool("transactional", false, "relays publish in Kafka transactions (kafka.Config.Transactional); consumers read committed")
	flag.Parse()
	if *txn {
		os.Setenv(transactionalEnv, "1") // the relay children inherit it
	}
	if o.quick {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		quick := map[string]func(){
			"n":        func() { o.events = 5000 },
			"writes":   func() { o.writes = 500 },
			"duration": func() { o.duration = 3 * time.Second },
			"rss-n":    func() { o.rssEvents = 20_000 },
		}
		for name, apply := range quick {
			if !set[name] {
				apply()
			}
		}
	}
	if only != "" {
		o.only = map[string]bool{}
		for _, s := range strings.Split(only, ",") {
			if !slices.Contains(sections, s) {
				fmt.Fprintf(os.Stderr, "outbox-bench: unknown section %q (want %s)\n", s, strings.Join(sections, ","))
				os.Exit(2)
			}
			o.only[s] = true
		}
	}
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "outbox-bench:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "outbox-bench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, &o); err != nil {
		fmt.Fprintln(os.Stderr, "outbox-bench:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func getenv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, o *options) error {
	began := time.Now()
	e, err := newEnv(ctx, o)
	if err != nil {
		return err
	}
	defer e.close()
	t := &table{}
	logf("outbox-bench: n=%d keys=%d writes=%d rate=%d/s duration=%v rss-n=%d mysql=%v",
		o.events, o.keys, o.writes, o.rate, o.duration, o.rssEvents, e.my != nil)

	if o.on("write") {
		writers := []writer{pgWriter(e, false), pgWriter(e, true)}
		if e.my != nil && o.on("mysql") {
			writers = append(writers, myWriter(e))
		}
		if e.lite != nil {
			writers = append(writers, liteWriter(e))
		}
		for _, w := range writers {
			if _, err := measured(ctx, e, t, "write "+w.name, func(t *table) (struct{}, error) {
				return struct{}{}, benchWrites(ctx, e, t, w)
			}); err != nil {
				return fmt.Errorf("write (%s): %w", w.name, err)
			}
		}
	}
	var ours, fwdDefault, fwdTuned drainResult
	if o.on("drain") {
		cases := []drainCase{
			{db: "PostgreSQL", keys: o.keys, relays: 1, target: 50_000},
			{db: "PostgreSQL", keys: 10, relays: 1, target: 30_000},
			{db: "PostgreSQL", keys: o.keys, relays: 3, target: 50_000, sameAsOne: true},
			{db: "PostgreSQL", keys: o.keys, relays: 1, deleteOnPublish: true},
		}
		if e.my != nil && o.on("mysql") {
			cases = append(cases, drainCase{db: "MariaDB", keys: o.keys, relays: 1, target: 25_000},
				drainCase{db: "MariaDB", keys: o.keys, relays: 1, deleteOnPublish: true})
		}
		if e.lite != nil {
			cases = append(cases, drainCase{db: "SQLite", keys: o.keys, relays: 1})
		}
		for i, c := range cases {
			res, err := measured(ctx, e, t, "drain "+c.name(), func(t *table) (drainResult, error) {
				return drainOurs(ctx, e, t, "drain (ours)", c)
			})
			if err != nil {
				return fmt.Errorf("drain %s: %w", c.name(), err)
			}
			if i == 0 {
				ours, e.drainOneRelay = res, res.rate
			}
		}
	}
	if o.on("forwarder") && o.on("drain") {
		for _, tuned := range []bool{false, true} {
			res, err := measured(ctx, e, t, "forwarder drain "+fwdName(tuned), func(t *table) (drainResult, error) {
				return drainForwarder(ctx, e, t, tuned)
			})
			if err != nil {
				return fmt.Errorf("forwarder drain %s: %w", fwdName(tuned), err)
			}
			if tuned {
				fwdTuned = res
			} else {
				fwdDefault = res
			}
		}
		if ours.rate > 0 {
			t.ratio("drain", "ours / forwarder (docs config)", ours.rate/fwdDefault.rate, 0)
			t.ratio("drain", "ours / forwarder (tuned)", ours.rate/fwdTuned.rate, 6)
		}
	}
	var sIn, sOut, sFwdDefault, sFwdTuned latencies
	if o.on("steady") {
		for _, place := range []relayPlace{inProcess, otherPolling, otherNotified} {
			lat, err := measured(ctx, e, t, "steady "+place.String(), func(t *table) (latencies, error) {
				return steadyOurs(ctx, e, t, "steady (ours)", place)
			})
			if err != nil {
				return fmt.Errorf("steady %s: %w", place, err)
			}
			switch place {
			case inProcess:
				sIn = lat
			case otherPolling:
				sOut = lat
			}
		}
	}
	if o.on("forwarder") && o.on("steady") {
		for _, tuned := range []bool{false, true} {
			lat, err := measured(ctx, e, t, "forwarder steady "+fwdName(tuned), func(t *table) (latencies, error) {
				return steadyForwarder(ctx, e, t, tuned)
			})
			if err != nil {
				return fmt.Errorf("forwarder steady %s: %w", fwdName(tuned), err)
			}
			if tuned {
				sFwdTuned = lat
			} else {
				sFwdDefault = lat
			}
		}
		if sIn.n > 0 {
			// Latency ratios read as "how many times lower ours is".
			t.ratio("steady", "p50 forwarder (docs config) / ours in-process", ms(sFwdDefault.p50)/ms(sIn.p50), 0)
			t.ratio("steady", "p50 forwarder (tuned) / ours in-process", ms(sFwdTuned.p50)/ms(sIn.p50), 0)
			t.ratio("steady", "p99 forwarder (tuned) / ours in-process", ms(sFwdTuned.p99)/ms(sIn.p99), 0)
		}
		if sOut.n > 0 {
			t.ratio("steady", "p50 forwarder (tuned) / ours other process (polling)", ms(sFwdTuned.p50)/ms(sOut.p50), 1)
			t.ratio("steady", "p99 forwarder (tuned) / ours other process (polling)", ms(sFwdTuned.p99)/ms(sOut.p99), 1)
		}
	}
	if o.realKafka != "" && o.realKafka != o.kafka && (o.on("drain") || o.on("steady")) {
		if err := onRealKafka(ctx, e, t); err != nil {
			return err
		}
	}
	if o.on("rss") {
		if _, err := measured(ctx, e, t, "rss", func(t *table) (struct{}, error) {
			return struct{}{}, benchRSS(ctx, e, t)
		}); err != nil {
			return fmt.Errorf("rss: %w", err)
		}
	}
	t.print(os.Stdout)
	fmt.Printf("\ntotal run time %v\n", time.Since(began).Round(time.Second))
	return nil
}

// onRealKafka repeats the 1-relay drain and the in-process steady run
// against the Apache Kafka broker e.o.realKafka, when it can be reached.
func onRealKafka(ctx context.Context, e *env, t *table) error {
	real, closeAdmin, err := e.onKafka(ctx, e.o.realKafka)
	if err != nil {
		logf("Apache Kafka at %s unreachable, skipped: %v", e.o.realKafka, err)
		return nil
	}
	defer closeAdmin()
	if e.o.on("drain") {
		c := drainCase{db: "PostgreSQL", keys: e.o.keys, relays: 1, target: 50_000}
		if _, err := measured(ctx, real, t, "drain on Apache Kafka "+c.name(), func(t *table) (drainResult, error) {
			return drainOurs(ctx, real, t, "drain (ours, Apache Kafka)", c)
		}); err != nil {
			return fmt.Errorf("drain on Apache Kafka: %w", err)
		}
	}
	if e.o.on("steady") {
		if _, err := measured(ctx, real, t, "steady on Apache Kafka", func(t *table) (latencies, error) {
			return steadyOurs(ctx, real, t, "steady (ours, Apache Kafka)", inProcess)
		}); err != nil {
			return fmt.Errorf("steady on Apache Kafka: %w", err)
		}
	}
	return nil
}

// logf reports progress on stderr, so that stdout carries the table only.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

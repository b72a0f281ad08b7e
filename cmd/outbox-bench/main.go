// Command outbox-bench measures the outbox against the machine it runs on and
// against Watermill's forwarder, in one run, on the same PostgreSQL, MariaDB
// and Kafka broker (the in-process devkafka, or Apache Kafka with -kafka),
// and prints one table:
//
//  1. write overhead: a business transaction with and without one outbox
//     event, 1 and 8 writers (PostgreSQL and MariaDB);
//  2. drain: a pre-loaded backlog relayed to Kafka and consumed back by an
//     independent client (franz-go), checking count, duplicates and per-key
//     order; hot-key and 3-relay variants;
//  3. steady latency: writers commit at a fixed rate while a relay runs, in
//     the same process (in-process wake) and in another process;
//  4. the same drain and steady runs through Watermill's forwarder
//     (watermill-sql + components/forwarder + watermill-kafka), with the
//     configuration its documentation shows and tuned;
//  5. the peak RSS of a relay process draining a large backlog.
//
// Every scenario uses a fresh table (dropped afterwards) and a fresh topic.
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
}

func (o *options) on(section string) bool { return len(o.only) == 0 || o.only[section] }

// sections are the parts of the run that -only selects.
var sections = []string{"write", "drain", "steady", "forwarder", "rss", "mysql"}

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
		if err := benchWrites(ctx, e, t, pgWriter(e, false)); err != nil {
			return fmt.Errorf("write (PostgreSQL): %w", err)
		}
		if err := benchWrites(ctx, e, t, pgWriter(e, true)); err != nil {
			return fmt.Errorf("write (PostgreSQL, batched): %w", err)
		}
		if e.my != nil && o.on("mysql") {
			if err := benchWrites(ctx, e, t, myWriter(e)); err != nil {
				return fmt.Errorf("write (MariaDB): %w", err)
			}
		}
	}
	var ours, fwdDefault, fwdTuned drainResult
	if o.on("drain") {
		if ours, err = drainOurs(ctx, e, t, "PostgreSQL", o.keys, 1); err != nil {
			return fmt.Errorf("drain: %w", err)
		}
		if _, err = drainOurs(ctx, e, t, "PostgreSQL", 10, 1); err != nil {
			return fmt.Errorf("drain hot key: %w", err)
		}
		if _, err = drainOurs(ctx, e, t, "PostgreSQL", o.keys, 3); err != nil {
			return fmt.Errorf("drain 3 relays: %w", err)
		}
		if e.my != nil && o.on("mysql") {
			if _, err = drainOurs(ctx, e, t, "MariaDB", o.keys, 1); err != nil {
				return fmt.Errorf("drain (MariaDB): %w", err)
			}
		}
	}
	if o.on("forwarder") && o.on("drain") {
		if fwdDefault, err = drainForwarder(ctx, e, t, false); err != nil {
			return fmt.Errorf("forwarder drain: %w", err)
		}
		if fwdTuned, err = drainForwarder(ctx, e, t, true); err != nil {
			return fmt.Errorf("forwarder drain (tuned): %w", err)
		}
		if ours.rate > 0 {
			t.ratio("drain", "ours / forwarder (docs config)", ours.rate/fwdDefault.rate, "")
			t.ratio("drain", "ours / forwarder (tuned)", ours.rate/fwdTuned.rate, "≥ 10×")
		}
	}
	var sIn, sOut, sFwdDefault, sFwdTuned latencies
	if o.on("steady") {
		if sIn, err = steadyOurs(ctx, e, t, inProcess); err != nil {
			return fmt.Errorf("steady (in process): %w", err)
		}
		if sOut, err = steadyOurs(ctx, e, t, otherPolling); err != nil {
			return fmt.Errorf("steady (other process): %w", err)
		}
		if _, err = steadyOurs(ctx, e, t, otherNotified); err != nil {
			return fmt.Errorf("steady (other process, NOTIFY): %w", err)
		}
	}
	if o.on("forwarder") && o.on("steady") {
		if sFwdDefault, err = steadyForwarder(ctx, e, t, false); err != nil {
			return fmt.Errorf("forwarder steady: %w", err)
		}
		if sFwdTuned, err = steadyForwarder(ctx, e, t, true); err != nil {
			return fmt.Errorf("forwarder steady (tuned): %w", err)
		}
		if sIn.n > 0 {
			// Latency ratios read as "how many times lower ours is".
			t.ratio("steady", "p50 forwarder (docs config) / ours in-process", ms(sFwdDefault.p50)/ms(sIn.p50), "")
			t.ratio("steady", "p50 forwarder (tuned) / ours in-process", ms(sFwdTuned.p50)/ms(sIn.p50), "")
			t.ratio("steady", "p99 forwarder (tuned) / ours in-process", ms(sFwdTuned.p99)/ms(sIn.p99), "")
			t.ratio("steady", "p50 forwarder (tuned) / ours other process (polling)", ms(sFwdTuned.p50)/ms(sOut.p50), "")
		}
	}
	if o.on("rss") {
		if err := benchRSS(ctx, e, t); err != nil {
			return fmt.Errorf("rss: %w", err)
		}
	}
	t.print(os.Stdout)
	fmt.Printf("\ntotal run time %v\n", time.Since(began).Round(time.Second))
	return nil
}

// logf reports progress on stderr, so that stdout carries the table only.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// loadAvg returns the machine's 1-minute load average, NaN if unknown.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return math.NaN()
	}
	f, err := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	if err != nil {
		return math.NaN()
	}
	return f
}

// settleWait bounds how long a measured scenario waits for the load left by
// the one before it (the benchmark's own) to decay below the limit.
const settleWait = 20 * time.Second

// settle waits until the load average is at most e.o.maxLoad, or for
// settleWait, and returns it.
func (e *env) settle(ctx context.Context) float64 {
	deadline := time.Now().Add(settleWait)
	for {
		load := loadAvg()
		if !(load > e.o.maxLoad) || time.Now().After(deadline) || ctx.Err() != nil {
			return load
		}
		time.Sleep(time.Second)
	}
}

// measured runs one measured scenario, which adds its rows to the table it
// is given. It prints the load average first; when that was above
// e.o.maxLoad, a noisy neighbour may have slowed the run, so it runs the
// scenario again, at most e.o.repeats more times, and keeps the run that
// started at the lowest load. Each row carries the load its run started at.
func measured[T any](ctx context.Context, e *env, t *table, name string, run func(t *table) (T, error)) (T, error) {
	var best T
	var bestRows []row
	bestLoad := math.Inf(1)
	for attempt := 0; attempt <= e.o.repeats; attempt++ {
		load := e.settle(ctx)
		logf("%s: load average %.2f", name, load)
		var rows table
		res, err := run(&rows)
		if err != nil {
			return res, err
		}
		if math.IsNaN(load) || load < bestLoad {
			best, bestRows, bestLoad = res, rows.rows, load
		}
		if !(load > e.o.maxLoad) {
			break
		}
		if attempt < e.o.repeats {
			logf("%s: the load average was above %.1f; measuring again", name, e.o.maxLoad)
		}
	}
	for _, r := range bestRows {
		r.load = fmt.Sprintf("%.2f", bestLoad)
		t.rows = append(t.rows, r)
	}
	return best, nil
}

package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"text/tabwriter"
	"time"
)

// table collects the rows of the one table the program prints.
type table struct {
	rows []row
}

type row struct {
	section, scenario, result, target, status string
	// load is the load average when the row's run started; "" for rows
	// computed from others.
	load string
}

// add appends a row. status is "ok", "MISS" or "" (no target).
func (t *table) add(section, scenario, result, target string, met *bool) {
	status := ""
	if met != nil {
		status = "MISS"
		if *met {
			status = "ok"
		}
	}
	t.rows = append(t.rows, row{section: section, scenario: scenario, result: result, target: target, status: status})
}

// ratio adds a ratio; with min > 0 its target is "≥ min×".
func (t *table) ratio(section, scenario string, r, min float64) {
	if min <= 0 {
		t.add(section, scenario, fmt.Sprintf("%.1f×", r), "", nil)
		return
	}
	t.add(section, scenario, fmt.Sprintf("%.1f×", r), fmt.Sprintf("≥ %g×", min), check(r >= min))
}

func (t *table) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SECTION\tSCENARIO\tRESULT\tTARGET\tSTATUS\tLOAD")
	last := ""
	for _, r := range t.rows {
		section := r.section
		if section == last {
			section = ""
		}
		last = r.section
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", section, r.scenario, r.result, r.target, r.status, r.load)
	}
	tw.Flush()
}

func check(ok bool) *bool { return &ok }

// latencies summarizes a sample of durations.
type latencies struct {
	n             int
	p50, p99, max time.Duration
}

func summarize(ds []time.Duration) latencies {
	if len(ds) == 0 {
		return latencies{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return latencies{n: len(s), p50: quantile(s, 0.50), p99: quantile(s, 0.99), max: s[len(s)-1]}
}

// quantile of a sorted sample, nearest rank.
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func (l latencies) String() string {
	return fmt.Sprintf("p50 %.2f ms  p99 %.2f ms  max %.1f ms", ms(l.p50), ms(l.p99), ms(l.max))
}

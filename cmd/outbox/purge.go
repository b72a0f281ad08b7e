package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
)

var purgeCommand = &command{
	name:    "purge",
	summary: "delete published and skipped events older than a duration, in bounded chunks; pending and parked events are never touched",
	setup: func(fs *flag.FlagSet) func(context.Context, *invocation) error {
		db := dbFlags(fs)
		var olderThan duration
		fs.Var(&olderThan, "older-than", "delete events published or skipped longer ago than this, by the database clock: 90m, 36h, 7d (required)")
		batch := fs.Int("batch", 1000, "most rows deleted per statement")
		return func(ctx context.Context, inv *invocation) error {
			switch {
			case olderThan <= 0:
				return usagef("--older-than is required and must be positive")
			case *batch <= 0:
				return usagef("--batch must be positive")
			}
			d, err := db.openStore(ctx)
			if err != nil {
				return err
			}
			defer d.Close()
			total := 0
			last := time.Now()
			for {
				n, err := d.store.DeletePublished(ctx, time.Duration(olderThan), *batch)
				total += n
				if err != nil {
					return fmt.Errorf("after %d deleted: %w", total, err)
				}
				if n < *batch {
					break
				}
				if time.Since(last) >= time.Second {
					fmt.Fprintf(inv.stderr, "purge: %d deleted so far\n", total)
					last = time.Now()
				}
			}
			fmt.Fprintf(inv.stdout, "deleted %d events of %s published or skipped more than %s ago\n", total, d.table, &olderThan)
			return nil
		}
	},
}

// duration is a flag value like time.Duration that also takes days ("7d"),
// the unit retention is usually thought in.
type duration time.Duration

func (d *duration) String() string {
	if d == nil || *d == 0 {
		return "0"
	}
	if t := time.Duration(*d); t%(24*time.Hour) == 0 {
		return strconv.Itoa(int(t/(24*time.Hour))) + "d"
	}
	return time.Duration(*d).String()
}

func (d *duration) Set(s string) error {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(days, 64)
		if err != nil {
			return fmt.Errorf("invalid duration %q", s)
		}
		*d = duration(n * float64(24*time.Hour))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q: want e.g. 90s, 15m, 36h or 7d", s)
	}
	*d = duration(v)
	return nil
}

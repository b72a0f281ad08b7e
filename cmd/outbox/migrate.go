package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"text/tabwriter"

	"github.com/outboxkit/outbox/migrations"
)

var migrateCommand = &command{
	name:    "migrate",
	summary: "create, upgrade or revert the outbox table (PostgreSQL or MySQL/MariaDB, from the DSN)",
	sub:     []*command{migrateUpCommand, migrateDownCommand, migrateStatusCommand},
}

var migrateUpCommand = &command{
	name:    "up",
	summary: "apply every migration the table lacks; an existing seed table is adopted",
	setup: func(fs *flag.FlagSet) func(context.Context, *invocation) error {
		db := dbFlags(fs)
		return func(ctx context.Context, inv *invocation) error {
			d, err := db.open(ctx)
			if err != nil {
				return err
			}
			defer d.Close()
			before, err := migrations.List(ctx, d.sql, d.dialect, d.table)
			if err != nil {
				return err
			}
			if err := migrations.Up(ctx, d.sql, d.dialect, d.table); err != nil {
				return err
			}
			n := 0
			for _, m := range before {
				if !m.Applied {
					fmt.Fprintf(inv.stdout, "applied %d_%s to %s\n", m.Version, m.Name, d.table)
					n++
				}
			}
			if n == 0 {
				fmt.Fprintf(inv.stdout, "%s is up to date (version %d)\n", d.table, len(before))
			}
			return nil
		}
	},
}

var migrateDownCommand = &command{
	name:    "down",
	summary: "revert the last applied migration of the table",
	setup: func(fs *flag.FlagSet) func(context.Context, *invocation) error {
		db := dbFlags(fs)
		drop := fs.Bool("drop-table", false, "allow reverting version 1, which drops the table with every event in it")
		return func(ctx context.Context, inv *invocation) error {
			d, err := db.open(ctx)
			if err != nil {
				return err
			}
			defer d.Close()
			list, err := migrations.List(ctx, d.sql, d.dialect, d.table)
			if err != nil {
				return err
			}
			var last *migrations.Status
			for i := range list {
				if list[i].Applied {
					last = &list[i]
				}
			}
			switch {
			case last == nil:
				fmt.Fprintf(inv.stdout, "%s has no migration applied; nothing to revert\n", d.table)
				return nil
			case last.Version == 1 && !*drop:
				return usagef("reverting 1_%s drops %s with every event in it; pass --drop-table to do so", last.Name, d.table)
			}
			if err := migrations.Down(ctx, d.sql, d.dialect, d.table); err != nil {
				return err
			}
			fmt.Fprintf(inv.stdout, "reverted %d_%s on %s\n", last.Version, last.Name, d.table)
			return nil
		}
	},
}

// migrationJSON is one line of 'migrate status --json'.
type migrationJSON struct {
	Version int    `json:"version"`
	Name    string `json:"name"`
	Applied bool   `json:"applied"`
}

var migrateStatusCommand = &command{
	name:    "status",
	summary: "list the migrations and whether each is applied to the table",
	setup: func(fs *flag.FlagSet) func(context.Context, *invocation) error {
		db := dbFlags(fs)
		asJSON := fs.Bool("json", false, "print JSON")
		return func(ctx context.Context, inv *invocation) error {
			d, err := db.open(ctx)
			if err != nil {
				return err
			}
			defer d.Close()
			list, err := migrations.List(ctx, d.sql, d.dialect, d.table)
			if err != nil {
				return err
			}
			if *asJSON {
				out := struct {
					Table      string          `json:"table"`
					Dialect    string          `json:"dialect"`
					Migrations []migrationJSON `json:"migrations"`
				}{Table: d.table, Dialect: d.dialect.Name(), Migrations: []migrationJSON{}}
				for _, m := range list {
					out.Migrations = append(out.Migrations, migrationJSON{m.Version, m.Name, m.Applied})
				}
				return writeJSON(inv, out)
			}
			fmt.Fprintf(inv.stdout, "table %s (%s)\n\n", d.table, d.dialect.Name())
			tw := tabwriter.NewWriter(inv.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tNAME\tSTATE")
			for _, m := range list {
				state := "pending"
				if m.Applied {
					state = "applied"
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\n", m.Version, m.Name, state)
			}
			return tw.Flush()
		}
	},
}

func writeJSON(inv *invocation, v any) error {
	enc := json.NewEncoder(inv.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

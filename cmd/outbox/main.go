// Command outbox is the operator CLI of the outbox framework.
//
//	outbox <command> [flags]
//	outbox help [command]
//
// Every command takes --help.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// command is one subcommand, in a file of its own.
type command struct {
	name    string
	summary string
	// setup defines the command's flags on fs and returns what runs the
	// command once they are parsed. The command returns when ctx is done
	// (SIGINT or SIGTERM) or its work is.
	setup func(fs *flag.FlagSet) func(ctx context.Context, stdout io.Writer) error
}

// commands lists every subcommand, in the order help shows them.
var commands = []*command{
	devkafkaCommand,
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs the command line args and returns the exit code: 0 on success,
// 1 when the command failed, 2 on a usage error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	name := args[0]
	if name == "help" || name == "-h" || name == "-help" || name == "--help" {
		if len(args) < 2 {
			usage(stdout)
			return 0
		}
		name, args = args[1], []string{args[1], "--help"}
	}
	cmd := lookup(name)
	if cmd == nil {
		fmt.Fprintf(stderr, "outbox: unknown command %q\n\n", name)
		usage(stderr)
		return 2
	}

	fs := flag.NewFlagSet("outbox "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	runCmd := cmd.setup(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: outbox %s [flags]\n\n%s.\n\nflags:\n", cmd.name, cmd.summary)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "outbox %s: unexpected arguments %q\n", cmd.name, fs.Args())
		return 2
	}
	if err := runCmd(ctx, stdout); err != nil {
		fmt.Fprintf(stderr, "outbox %s: %v\n", cmd.name, err)
		return 1
	}
	return 0
}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func usage(w io.Writer) {
	fmt.Fprint(w, "outbox is the operator CLI of the transactional outbox.\n\nusage: outbox <command> [flags]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, "\nRun 'outbox help <command>' or 'outbox <command> --help' for a command's flags.\n")
}

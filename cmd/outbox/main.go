// Command outbox is the operator CLI of the outbox framework: it migrates
// the outbox table, shows its backlog, repairs parked events, purges,
// replays and audits what was published, and runs a standalone relay for
// services in other languages that write the same table.
//
//	outbox <command> [subcommand] [flags] [args]
//	outbox help [command [subcommand]]
//	outbox --version
//
// Every command takes --help. Flags may come before or after the arguments.
// Flags marked [$OUTBOX_...] in the help may be set by that environment
// variable instead; a flag on the command line wins.
//
// Exit codes: 0 success, 1 the command failed (wrong DSN, missing table,
// unreachable broker, ...), 2 usage error, 3 audit found events missing from
// the topic or out of order.
//
// # Databases
//
// The database is chosen by --dsn ($OUTBOX_DSN):
//
//	postgres://user:pass@host:5432/db?sslmode=disable   PostgreSQL (also postgresql://)
//	host=... dbname=...                                 PostgreSQL keyword/value form
//	user:pass@tcp(host:3306)/db?params                  MySQL/MariaDB, a go-sql-driver/mysql DSN
//	mysql://user:pass@tcp(host:3306)/db                 the same with the prefix (stripped)
//	mysql://user:pass@host:3306/db?params               MySQL/MariaDB as a URL
//	sqlite:path/to/file.db                              SQLite (created if missing; see store/sqlite.Open)
//
// MySQL connections always use interpolateParams=true and, unless the DSN
// sets time_zone, a UTC session time zone (see package store/mysql).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
)

// command is one command, or a group of subcommands, in a file of its own.
type command struct {
	name    string
	summary string
	// args names the positional arguments in the usage line, "" if none.
	args string
	// sub lists the subcommands of a group; a group has no setup.
	sub []*command
	// setup defines the command's flags on fs and returns what runs the
	// command once they are parsed. The command returns when ctx is done
	// (SIGINT or SIGTERM) or its work is.
	setup func(fs *flag.FlagSet) func(ctx context.Context, inv *invocation) error
}

// invocation is what a command runs with besides its flags.
type invocation struct {
	args []string
	// stdout gets the command's result; stderr its progress and warnings.
	stdout, stderr io.Writer
}

// errFindings is returned by a command whose check found problems: exit 3.
var errFindings = errors.New("problems found")

// commands lists every command, in the order help shows them.
var commands = []*command{
	migrateCommand,
	statusCommand,
	parkedCommand,
	purgeCommand,
	replayCommand,
	auditCommand,
	relayCommand,
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs the command line args and returns the exit code: 0 on success,
// 1 when the command failed, 2 on a usage error, 3 when a check found
// problems.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr, "outbox", commands)
		return 2
	}
	if args[0] == "--version" || args[0] == "-version" {
		fmt.Fprint(stdout, readBuild())
		return 0
	}
	if isHelp(args[0]) {
		if len(args) < 2 {
			usage(stdout, "outbox", commands)
			return 0
		}
		args = append(args[1:], "--help")
	}
	path, list := "outbox", commands
	for {
		cmd := lookup(list, args[0])
		if cmd == nil {
			fmt.Fprintf(stderr, "%s: unknown command %q\n\n", path, args[0])
			usage(stderr, path, list)
			return 2
		}
		path += " " + cmd.name
		if cmd.sub == nil {
			return runCommand(ctx, path, cmd, args[1:], stdout, stderr)
		}
		args, list = args[1:], cmd.sub
		switch {
		case len(args) == 0:
			usage(stderr, path, list)
			return 2
		case isHelp(args[0]):
			usage(stdout, path, list)
			return 0
		}
	}
}

func runCommand(ctx context.Context, path string, cmd *command, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(path, flag.ContinueOnError)
	fs.SetOutput(stderr)
	runCmd := cmd.setup(fs)
	fs.Usage = func() {
		line := path + " [flags]"
		if cmd.args != "" {
			line += " " + cmd.args
		}
		fmt.Fprintf(fs.Output(), "usage: %s\n\n%s.\n\nflags:\n", line, cmd.summary)
		fs.PrintDefaults()
	}
	if err := fromEnv(fs); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", path, err)
		return 2
	}
	// flag stops at the first argument; parse again after each one so that
	// flags may follow arguments ("parked show <id> --dsn ...").
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if cmd.args == "" && len(positional) > 0 {
		fmt.Fprintf(stderr, "%s: unexpected arguments %q\n", path, positional)
		return 2
	}
	err := runCmd(ctx, &invocation{args: positional, stdout: stdout, stderr: stderr})
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "%s: %v\n", path, err)
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", path)
		return 2
	case errors.Is(err, errFindings):
		fmt.Fprintf(stderr, "%s: %v\n", path, err)
		return 3
	}
	fmt.Fprintf(stderr, "%s: %v\n", path, err)
	return 1
}

// usageError is a wrong or missing flag or argument, found after parsing.
type usageError string

func (e usageError) Error() string { return string(e) }

func usagef(format string, args ...any) error { return usageError(fmt.Sprintf(format, args...)) }

// envVar finds the variable of a flag in its usage text: "... [$OUTBOX_DSN]".
var envVar = regexp.MustCompile(`\[\$(OUTBOX_[A-Z0-9_]+)\]`)

// fromEnv sets the flags that name an environment variable from it; parsing
// the command line afterwards overrides them.
func fromEnv(fs *flag.FlagSet) error {
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		m := envVar.FindStringSubmatch(f.Usage)
		if m == nil {
			return
		}
		if v, ok := os.LookupEnv(m[1]); ok && v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("$%s: %w", m[1], err))
			}
		}
	})
	return errors.Join(errs...)
}

func isHelp(arg string) bool {
	return arg == "help" || arg == "-h" || arg == "-help" || arg == "--help"
}

func lookup(list []*command, name string) *command {
	for _, c := range list {
		if c.name == name {
			return c
		}
	}
	return nil
}

func usage(w io.Writer, path string, list []*command) {
	if path == "outbox" {
		fmt.Fprint(w, "outbox is the operator CLI of the transactional outbox.\n\n")
	}
	fmt.Fprintf(w, "usage: %s <command> [flags]\n\ncommands:\n", path)
	for _, c := range list {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun '%s <command>' or '%s <command> --help' for a command's flags.\n",
		"outbox help"+strings.TrimPrefix(path, "outbox"), path)
	if path == "outbox" {
		fmt.Fprint(w, topHelp)
	}
}

const topHelp = `
Databases (--dsn, or $OUTBOX_DSN):
  postgres://user:pass@host:5432/db?sslmode=disable   PostgreSQL (also postgresql://, or host=... dbname=...)
  user:pass@tcp(host:3306)/db                         MySQL/MariaDB (go-sql-driver/mysql DSN)
  mysql://user:pass@tcp(host:3306)/db                 the same; the mysql:// prefix is stripped
  mysql://user:pass@host:3306/db                      MySQL/MariaDB as a URL
  sqlite:path/to/file.db                              SQLite (created if missing)

Flags marked [$OUTBOX_...] may be set by that environment variable; the command line wins.
'outbox --version' prints the module version and the VCS revision the binary was built from.
Exit codes: 0 ok, 1 failed, 2 usage error, 3 audit found missing or out-of-order events.
`

// Command skipcheck checks that the tests skip without their services and
// fail without them under CI. It runs go test -short on the packages given
// as arguments twice, with PostgreSQL, MariaDB and Kafka at a closed port and
// no Python interpreter: without CI every test must pass or skip, some must
// skip saying which service is unavailable, and no package may fail; with
// CI set each of those tests must fail, and each package whose examples were
// left out must fail too.
//
//	go run ./internal/testenv/skipcheck ./... ./store/postgres/...
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "skipcheck:", err)
		os.Exit(1)
	}
}

// event is a line of go test -json.
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// result is what one go test run did.
type result struct {
	failed      []string            // tests and packages that failed
	serviceSkip []string            // tests that skipped for a missing service
	examples    map[string]bool     // packages whose examples were left out
	output      map[string][]string // output of each test and package
}

func run(pkgs []string) error {
	if len(pkgs) == 0 {
		return fmt.Errorf("usage: skipcheck packages...")
	}
	port, err := closedPort()
	if err != nil {
		return err
	}
	env := []string{
		"OUTBOX_POSTGRES_URL=postgres://postgres@127.0.0.1:" + port + "/test?sslmode=disable",
		"OUTBOX_MYSQL_DSN=root@tcp(127.0.0.1:" + port + ")/test?parseTime=true",
		"OUTBOX_KAFKA_BROKERS=127.0.0.1:" + port,
		"OUTBOX_PYTHON=/nonexistent/python",
	}

	offline, err := goTest(pkgs, append(env, "CI="))
	if err != nil {
		return err
	}
	if len(offline.failed) > 0 {
		return fmt.Errorf("without the services and CI, these failed instead of skipping:\n%s", offline.describe(offline.failed))
	}
	if len(offline.serviceSkip) == 0 {
		return fmt.Errorf("no test skipped for a missing service: is the check still testing anything?")
	}
	fmt.Printf("skipcheck: without the services, %d tests skipped with their reason, %d packages left out their examples, none failed\n",
		len(offline.serviceSkip), len(offline.examples))

	ci, err := goTest(pkgs, append(env, "CI=true"))
	if err != nil {
		return err
	}
	var passed []string
	for _, name := range offline.serviceSkip {
		if !slices.Contains(ci.failed, name) {
			passed = append(passed, name)
		}
	}
	for pkg := range offline.examples {
		if !slices.Contains(ci.failed, pkg) {
			passed = append(passed, pkg+" (examples)")
		}
	}
	if len(passed) > 0 || len(ci.serviceSkip) > 0 {
		return fmt.Errorf("under CI without the services, these did not fail:\n%s",
			ci.describe(append(passed, ci.serviceSkip...)))
	}
	fmt.Printf("skipcheck: under CI, all %d failed\n", len(offline.serviceSkip)+len(offline.examples))
	return nil
}

// closedPort returns a local TCP port that nothing listens on.
func closedPort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port, ln.Close()
}

// goTest runs go test -short -json on pkgs with env added. Packages run
// side by side beyond the CPU count: most of their time goes to waiting for
// connections that are refused, and for the Kafka probe's retries.
func goTest(pkgs, env []string) (result, error) {
	cmd := exec.Command("go", append([]string{"test", "-short", "-count=1", "-p=8", "-json"}, pkgs...)...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return result{}, err
	}
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	r, perr := parse(out)
	werr := cmd.Wait()
	if perr != nil {
		return r, perr
	}
	if werr != nil && len(r.failed) == 0 {
		return r, fmt.Errorf("go test: %v\n%s", werr, stderr.String())
	}
	return r, nil
}

func parse(out io.Reader) (result, error) {
	r := result{examples: map[string]bool{}, output: map[string][]string{}}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return r, fmt.Errorf("go test -json: %w: %s", err, sc.Text())
		}
		name := strings.TrimSpace(e.Package + " " + e.Test)
		switch e.Action {
		case "output":
			r.output[name] = append(r.output[name], e.Output)
			if e.Test == "" && strings.HasPrefix(e.Output, "examples skipped: ") && strings.Contains(e.Output, " unavailable: ") {
				r.examples[e.Package] = true
			}
		case "fail", "build-fail":
			r.failed = append(r.failed, name)
		case "skip":
			if e.Test != "" && slices.ContainsFunc(r.output[name], func(line string) bool {
				return strings.Contains(line, " unavailable: ")
			}) {
				r.serviceSkip = append(r.serviceSkip, name)
			}
		}
	}
	return r, sc.Err()
}

// describe lists names with the last lines of their output.
func (r result) describe(names []string) string {
	var b strings.Builder
	for _, name := range names {
		fmt.Fprintf(&b, "  %s\n", name)
		lines := r.output[name]
		for _, line := range lines[max(0, len(lines)-8):] {
			fmt.Fprintf(&b, "      %s", line)
		}
	}
	return b.String()
}

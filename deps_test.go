package outbox_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A service pays only for the adapters it imports: for each import path, a
// service in a temporary module that imports it (with outbox and relay) is
// tidied against this working tree, and its go.mod must list what README's
// "What each import adds" table says, and none of the heavy modules of the
// other adapters.
func TestDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go mod tidy in temporary modules")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	t.Parallel()
	local := workspaceModules(t)
	table := readmeDeps(t)
	// What no service may get unless it imports the adapter that needs it.
	heavy := map[string][]string{
		"github.com/go-sql-driver/mysql":      {"store/mysql"},
		"modernc.org/sqlite":                  {"store/sqlite"},
		"github.com/jackc/pgx/v5":             {"store/postgres", "contrib/watermill"},
		"github.com/twmb/franz-go":            {"broker/kafka"},
		"github.com/ThreeDotsLabs/watermill":  {"broker/wmbroker", "contrib/watermill", "contrib/watermill/wmkafka", "contrib/amqp"},
		"github.com/IBM/sarama":               {"contrib/watermill/wmkafka"},
		"github.com/rabbitmq/amqp091-go":      {"contrib/amqp"},
		"go.opentelemetry.io/otel":            {"otel", "contrib/watermill", "contrib/watermill/wmkafka"}, // watermill-kafka traces sarama
		"go.opentelemetry.io/otel/sdk":        nil,
		"github.com/prometheus/client_golang": nil,
		"github.com/stretchr/testify":         nil,
		"go.uber.org/goleak":                  nil,
		"github.com/twmb/franz-go/pkg/kfake":  nil,
	}
	services := map[string][]string{
		"outbox, relay":             nil,
		"store/postgres":            {"store/postgres"},
		"store/mysql":               {"store/mysql"},
		"store/sqlite":              {"store/sqlite"},
		"broker/kafka":              {"broker/kafka"},
		"broker/wmbroker":           {"broker/wmbroker"},
		"otel":                      {"otel"},
		"contrib/watermill":         {"contrib/watermill"},
		"contrib/watermill/wmkafka": {"contrib/watermill/wmkafka"},
		"contrib/amqp":              {"contrib/amqp"},
		// The service of the README's first example.
		"store/postgres + broker/kafka": {"store/postgres", "broker/kafka"},
	}
	for name, imports := range services {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got := tidyService(t, local, imports)
			for mod, owners := range heavy {
				allowed := slices.ContainsFunc(owners, func(o string) bool { return slices.Contains(imports, o) })
				for _, m := range got {
					if !allowed && (m == mod || strings.HasPrefix(m, mod+"/")) {
						t.Errorf("importing %v adds %s", imports, m)
					}
				}
			}
			if want := table[name]; !slices.Equal(want, got) {
				t.Errorf("README's row %q lists %v; go mod tidy gives:\n| `%s` | %s |", name, want, name, formatMods(got))
			}
		})
	}
}

type module struct{ Path, Dir string }

// workspaceModules returns the modules of go.work.
func workspaceModules(t *testing.T) []module {
	t.Helper()
	out, err := exec.Command("go", "work", "edit", "-json").Output()
	if err != nil {
		t.Fatalf("go work edit -json: %v", err)
	}
	var work struct{ Use []struct{ DiskPath string } }
	if err := json.Unmarshal(out, &work); err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	var mods []module
	for _, u := range work.Use {
		dir := filepath.Join(root, u.DiskPath)
		path := "github.com/outboxkit/outbox"
		if rel := strings.TrimPrefix(u.DiskPath, "./"); rel != "." {
			path += "/" + filepath.ToSlash(rel)
		}
		mods = append(mods, module{path, dir})
	}
	return mods
}

// tidyService tidies a module whose main package imports outbox, relay and
// the given adapter packages, and returns the modules its go.mod requires,
// this repository's own left out.
func tidyService(t *testing.T, local []module, imports []string) []string {
	t.Helper()
	dir := t.TempDir()
	gomod := "module example.com/service\n\ngo 1.26.0\n\n"
	for _, m := range local {
		gomod += fmt.Sprintf("replace %s => %s\n", m.Path, m.Dir)
	}
	src := "package main\n\nimport (\n\t_ \"github.com/outboxkit/outbox\"\n\t_ \"github.com/outboxkit/outbox/relay\"\n"
	for _, imp := range imports {
		src += fmt.Sprintf("\t_ \"github.com/outboxkit/outbox/%s\"\n", imp)
	}
	src += ")\n\nfunc main() {}\n"
	for name, content := range map[string]string{"go.mod": gomod, "main.go": src} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "mod", "tidy")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go mod tidy: %v\n%s", err, out)
	}
	cmd = exec.Command("go", "mod", "edit", "-json")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	var mod struct{ Require []struct{ Path string } }
	if err := json.Unmarshal(out, &mod); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range mod.Require {
		if !strings.HasPrefix(r.Path, "github.com/outboxkit/outbox") {
			got = append(got, r.Path)
		}
	}
	slices.Sort(got)
	return got
}

// readmeDeps reads README's table of what each import adds to a service's
// go.mod: rows "| `name` | `mod`, `mod`, ... |" between the markers.
func readmeDeps(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	begin, end := strings.Index(s, "<!-- deps:begin -->"), strings.Index(s, "<!-- deps:end -->")
	if begin < 0 || end < begin {
		t.Fatal("README has no deps table between <!-- deps:begin --> and <!-- deps:end -->")
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(s[begin:end], "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || !strings.Contains(cells[1], "`") {
			continue
		}
		name := strings.Trim(strings.TrimSpace(cells[1]), "`")
		var mods []string
		for _, m := range strings.Split(cells[2], ",") {
			if m = strings.Trim(strings.TrimSpace(m), "`"); m != "" && m != "nothing else" {
				mods = append(mods, m)
			}
		}
		slices.Sort(mods)
		rows[name] = mods
	}
	return rows
}

func formatMods(mods []string) string {
	if len(mods) == 0 {
		return "nothing else"
	}
	return "`" + strings.Join(mods, "`, `") + "`"
}

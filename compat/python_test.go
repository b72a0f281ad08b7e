package compat_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outboxkit/outbox/internal/testenv"
)

// runPython runs compat/python/compat.py with args, in as JSON on its stdin,
// and decodes its stdout into out (when out is not nil).
func runPython(t *testing.T, in, out any, args ...string) {
	t.Helper()
	interpreter := cmp.Or(os.Getenv("OUTBOX_PYTHON"), filepath.Join("..", ".cache", "python", "venv", "bin", "python"))
	if _, err := exec.LookPath(interpreter); err != nil {
		testenv.Unavailable(t, "the Python virtualenv (make python-env)", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, interpreter, append([]string{filepath.Join("python", "compat.py")}, args...)...)
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdin = bytes.NewReader(b)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("python compat.py %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	if out != nil {
		if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
			t.Fatalf("python compat.py %s: output: %v\n%s", strings.Join(args, " "), err, stdout.String())
		}
	}
}

package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestVersionText(t *testing.T) {
	t.Parallel()
	platform := runtime.GOOS + "/" + runtime.GOARCH
	for _, tc := range []struct {
		name string
		info *debug.BuildInfo
		ok   bool
		want string
	}{
		{"released", &debug.BuildInfo{
			GoVersion: "go1.26.8",
			Main:      debug.Module{Path: "github.com/outboxkit/outbox", Version: "v1.4.0"},
			Settings: []debug.BuildSetting{
				{Key: "vcs", Value: "git"},
				{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
				{Key: "vcs.time", Value: "2026-11-26T21:30:52Z"},
				{Key: "vcs.modified", Value: "false"},
			},
		}, true, "outbox v1.4.0 (module github.com/outboxkit/outbox)\n" +
			"revision 0123456789abcdef0123456789abcdef01234567 2026-11-26T21:30:52Z\ngo1.26.8 " + platform + "\n"},
		{"modified work tree", &debug.BuildInfo{
			GoVersion: "go1.26.8",
			Main:      debug.Module{Path: "github.com/outboxkit/outbox", Version: "v0.0.0-20261126213052-0123456789ab+dirty"},
			Settings: []debug.BuildSetting{
				{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
				{Key: "vcs.modified", Value: "true"},
			},
		}, true, "outbox v0.0.0-20261126213052-0123456789ab+dirty (module github.com/outboxkit/outbox)\n" +
			"revision 0123456789abcdef0123456789abcdef01234567 (modified)\ngo1.26.8 " + platform + "\n"},
		{"no VCS", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/outboxkit/outbox", Version: "(devel)"}}, true,
			"outbox (devel) (module github.com/outboxkit/outbox)\nrevision unknown (built without VCS information)\ngo1.26.8 " + platform + "\n"},
		{"no build info", nil, false,
			"outbox unknown\nrevision unknown (built without VCS information)\n" + runtime.Version() + " " + platform + "\n"},
	} {
		require.Equal(t, tc.want, buildFrom(tc.info, tc.ok).String(), tc.name)
	}

	r := requireOK(t, cli(t, "--version"))
	require.Equal(t, readBuild().String(), r.stdout)
}

// A binary built from this checkout prints the version and revision that
// the toolchain stamped into it, and the revision is the checkout's HEAD.
// (Go stamps no revision in a git worktree, whose .git is a file: there the
// test checks that --version says so.)
func TestVersionOfBuiltBinary(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "outbox")
	args := []string{"build", "-buildvcs=true", "-o", bin}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "-race" && s.Value == "true" {
				args = append(args, "-race") // reuses the packages this test binary was built from
			}
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", append(args, ".")...).CombinedOutput()
	require.NoError(t, err, "%s", out)

	out, err = exec.CommandContext(ctx, "go", "version", "-m", bin).CombinedOutput()
	require.NoError(t, err, "%s", out)
	stamped := string(out)
	mod := regexp.MustCompile(`(?m)^\tmod\t(\S+)\t(\S+)`).FindStringSubmatch(stamped)
	require.NotNil(t, mod, stamped)

	out, err = exec.CommandContext(ctx, bin, "--version").CombinedOutput()
	require.NoError(t, err, "%s", out)
	version := string(out)
	require.True(t, strings.HasPrefix(version, "outbox "+mod[2]+" (module "+mod[1]+")\n"), "%s\nstamped:\n%s", version, stamped)

	rev := regexp.MustCompile(`(?m)^\tbuild\tvcs\.revision=(\S+)`).FindStringSubmatch(stamped)
	if rev == nil {
		require.Contains(t, version, "\nrevision unknown (built without VCS information)\n")
		t.Logf("no VCS information stamped (a git worktree or no git):\n%s", version)
		return
	}
	require.Contains(t, version, "\nrevision "+rev[1]+" ")
	head, err := exec.CommandContext(ctx, "git", "rev-parse", "HEAD").Output()
	require.NoError(t, err)
	require.Equal(t, strings.TrimSpace(string(head)), rev[1])
	require.Equal(t, strings.Contains(stamped, "vcs.modified=true"), strings.Contains(version, "(modified)"))
}

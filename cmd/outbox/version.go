package main

import (
	"cmp"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// build describes the binary, from the build information that the Go
// toolchain stamps into it.
type build struct {
	version, module string // the main module's version and path
	// revision and time name the VCS commit the binary was built from;
	// modified says the work tree had uncommitted changes.
	revision, time string
	modified       bool
	goVersion      string
}

func readBuild() build { return buildFrom(debug.ReadBuildInfo()) }

func buildFrom(info *debug.BuildInfo, ok bool) build {
	if !ok {
		return build{version: "unknown", goVersion: runtime.Version()}
	}
	b := build{version: cmp.Or(info.Main.Version, "unknown"), module: info.Main.Path, goVersion: info.GoVersion}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.revision = s.Value
		case "vcs.time":
			b.time = s.Value
		case "vcs.modified":
			b.modified = s.Value == "true"
		}
	}
	return b
}

// String is what 'outbox --version' prints.
func (b build) String() string {
	var s strings.Builder
	fmt.Fprintf(&s, "outbox %s", b.version)
	if b.module != "" {
		fmt.Fprintf(&s, " (module %s)", b.module)
	}
	s.WriteString("\nrevision ")
	if b.revision == "" {
		s.WriteString("unknown (built without VCS information)")
	} else {
		s.WriteString(strings.TrimSpace(b.revision + " " + b.time))
		if b.modified {
			s.WriteString(" (modified)")
		}
	}
	fmt.Fprintf(&s, "\n%s %s/%s\n", b.goVersion, runtime.GOOS, runtime.GOARCH)
	return s.String()
}

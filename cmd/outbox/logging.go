package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/go-logr/logr"
	"go.opentelemetry.io/otel"
)

// newLogger returns the logger of --log-level and --log-format, writing to w.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usagef("--log-format %q: want text or json", format)
}

// routeOTelLogs sends what the OpenTelemetry SDK logs through logger, so
// that every line has the format of --log-format: its error handler (a
// failed metrics collection, such as the table's Stats query) and its
// internal logger. Both are process-wide.
func routeOTelLogs(logger *slog.Logger) {
	l := logger.With("logger", "opentelemetry")
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { l.Error("opentelemetry error", "err", err) }))
	otel.SetLogger(logr.FromSlogHandler(l.Handler()))
}

// mysqlLogger is the MySQL driver's logger on slog. The driver logs errors
// that it also returns, or after which it drops the connection (a connection
// the server closed); set per connector, it replaces the driver's default,
// which writes plain text to stderr.
type mysqlLogger struct{ l *slog.Logger }

func (m mysqlLogger) Print(v ...any) { m.l.Warn(strings.TrimSpace(fmt.Sprint(v...))) }

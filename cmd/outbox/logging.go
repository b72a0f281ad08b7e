package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/go-logr/logr"
	gomysql "github.com/go-sql-driver/mysql"
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

// routeLibraryLogs sends what libraries log on their own through logger, so
// that every line has the format of --log-format: the OpenTelemetry error
// handler (a failed metrics collection, such as the table's Stats query) and
// internal logger, the MySQL driver's logger (a connection the server
// closed), and the standard log package. It sets process-wide state: call it
// before opening the database, whose MySQL configuration takes the driver's
// logger when it is parsed.
func routeLibraryLogs(logger *slog.Logger) {
	slog.SetDefault(logger)
	otelLog := logger.With("logger", "opentelemetry")
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { otelLog.Error("opentelemetry error", "err", err) }))
	otel.SetLogger(logr.FromSlogHandler(otelLog.Handler()))
	_ = gomysql.SetLogger(mysqlLogger{logger.With("logger", "mysql")})
}

// mysqlLogger is the MySQL driver's logger on slog. The driver logs errors
// that it also returns, or after which it drops the connection.
type mysqlLogger struct{ l *slog.Logger }

func (m mysqlLogger) Print(v ...any) { m.l.Warn(strings.TrimSpace(fmt.Sprint(v...))) }

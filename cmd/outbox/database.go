package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/user"
	"strings"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/outboxkit/outbox/migrations"
	"github.com/outboxkit/outbox/store"
	"github.com/outboxkit/outbox/store/mysql"
	"github.com/outboxkit/outbox/store/postgres"
	"github.com/outboxkit/outbox/store/sqlite"
)

// connectTimeout bounds connecting, so that a wrong host fails fast.
const connectTimeout = 10 * time.Second

// dbOptions are the flags of every command that uses the database.
type dbOptions struct {
	dsn, table *string
	// logger, if set, receives what the database driver logs on its own.
	logger *slog.Logger
}

func dbFlags(fs *flag.FlagSet) dbOptions {
	return dbOptions{
		dsn: fs.String("dsn", "", "database: postgres://user@host:5432/db, user:pass@tcp(host:3306)/db or sqlite:file.db "+
			"(see 'outbox help') [$OUTBOX_DSN]"),
		table: fs.String("table", migrations.DefaultTable, "outbox table, optionally schema-qualified [$OUTBOX_TABLE]"),
	}
}

// adminStore is what the commands need of a store: every store of this
// repository implements it.
type adminStore interface {
	store.Store
	store.Admin
}

// database is an open outbox database.
type database struct {
	dialect migrations.Dialect
	table   string
	// sql serves the migrations; on PostgreSQL it runs over the store's pool.
	sql   *sql.DB
	store adminStore
	close func()
	// pingPooled pings over a pooled connection, pingNew over a connection
	// of its own.
	pingPooled, pingNew func(context.Context) error
}

func (d *database) Close() { d.close() }

// ping checks that the database answers. A pooled connection that the
// server closed (a restart, pg_terminate_backend, KILL CONNECTION) fails one
// ping before the pool drops it, so a failed pooled ping is tried again on a
// new connection: one stale connection must not make a database that answers
// look down.
func (d *database) ping(ctx context.Context) error {
	if d.pingPooled(ctx) == nil {
		return nil
	}
	return d.pingNew(ctx)
}

// open connects to the database of o.dsn. It checks the connection but not
// the table; see openStore.
func (o dbOptions) open(ctx context.Context) (*database, error) {
	dialect, dsn, err := parseDSN(*o.dsn)
	if err != nil {
		return nil, err
	}
	if err := migrations.ValidateTable(*o.table); err != nil {
		return nil, usageError(err.Error())
	}
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	d := &database{dialect: dialect, table: *o.table}
	var st store.Store
	switch dialect {
	case migrations.SQLite:
		if d.sql, err = sqlite.Open(dsn); err != nil {
			return nil, err
		}
		d.close = func() { d.sql.Close() }
		d.pingPooled, d.pingNew = d.sql.PingContext, d.sql.PingContext
		if st, err = sqlite.New(d.sql, sqlite.Config{Table: d.table}); err != nil {
			d.close()
			return nil, usageError(err.Error())
		}
	case migrations.PostgreSQL:
		cfg, err := pgxpool.ParseConfig(dsn)
		if err != nil {
			return nil, usagef("--dsn: %v", err)
		}
		if cfg.ConnConfig.ConnectTimeout == 0 {
			cfg.ConnConfig.ConnectTimeout = connectTimeout
		}
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		if err := pool.Ping(ctx); err != nil {
			pool.Close()
			return nil, fmt.Errorf("postgres: %w", err)
		}
		d.sql = stdlib.OpenDBFromPool(pool)
		d.close = func() { d.sql.Close(); pool.Close() }
		d.pingPooled = pool.Ping
		d.pingNew = func(ctx context.Context) error {
			conn, err := pgx.ConnectConfig(ctx, pool.Config().ConnConfig)
			if err != nil {
				return err
			}
			defer conn.Close(ctx)
			return conn.Ping(ctx)
		}
		st, err = postgres.New(pool, postgres.Config{Table: d.table})
		if err != nil {
			d.close()
			return nil, err
		}
	default:
		cfg, err := gomysql.ParseDSN(dsn)
		if err != nil {
			return nil, usagef("--dsn: %v", err)
		}
		cfg.InterpolateParams = true
		if cfg.Params == nil {
			cfg.Params = map[string]string{}
		}
		if _, ok := cfg.Params["time_zone"]; !ok {
			cfg.Params["time_zone"] = "'+00:00'"
		}
		if cfg.Timeout == 0 {
			cfg.Timeout = connectTimeout
		}
		if o.logger != nil {
			cfg.Logger = mysqlLogger{o.logger.With("logger", "mysql")}
		}
		conn, err := gomysql.NewConnector(cfg)
		if err != nil {
			return nil, usagef("--dsn: %v", err)
		}
		d.sql = sql.OpenDB(conn)
		d.close = func() { d.sql.Close() }
		d.pingPooled = d.sql.PingContext
		d.pingNew = func(ctx context.Context) error {
			c, err := conn.Connect(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			if p, ok := c.(driver.Pinger); ok {
				return p.Ping(ctx)
			}
			return nil // connecting was the check
		}
		if err := d.sql.PingContext(ctx); err != nil {
			d.close()
			return nil, fmt.Errorf("mysql: %w", err)
		}
		st, err = mysql.New(d.sql, mysql.Config{Table: d.table})
		if err != nil {
			d.close()
			return nil, err
		}
	}
	d.store = st.(adminStore)
	return d, nil
}

// openStore connects like open and checks that the table exists and has
// the relay's columns, so that a missing table is reported as such rather
// than by the first query that needs it.
func (o dbOptions) openStore(ctx context.Context) (*database, error) {
	d, err := o.open(ctx)
	if err != nil {
		return nil, err
	}
	_, err = d.sql.ExecContext(ctx, "SELECT seq, topic, headers, next_attempt_at, parked_at FROM "+d.table+" WHERE 1 = 0")
	if err == nil {
		_, err = d.sql.ExecContext(ctx, "SELECT token FROM "+migrations.ClaimsTable(d.table)+" WHERE 1 = 0")
		if err != nil {
			d.close()
			return nil, fmt.Errorf("table %s lacks its table of claims (%v); add it with 'outbox migrate up'", d.table, err)
		}
	}
	if err != nil {
		d.close()
		var pgErr *pgconn.PgError
		var myErr *gomysql.MySQLError
		switch {
		case errors.As(err, &pgErr) && pgErr.Code == "42P01", errors.As(err, &myErr) && myErr.Number == 1146,
			strings.Contains(err.Error(), "no such table"):
			return nil, fmt.Errorf("table %s does not exist; create it with 'outbox migrate up'", d.table)
		case errors.As(err, &pgErr) && pgErr.Code == "42703", errors.As(err, &myErr) && myErr.Number == 1054,
			strings.Contains(err.Error(), "no such column"):
			return nil, fmt.Errorf("table %s lacks the relay's columns; add them with 'outbox migrate up'", d.table)
		}
		return nil, fmt.Errorf("table %s: %w", d.table, err)
	}
	return d, nil
}

// parseDSN tells the dialect from dsn (see the package doc) and returns the
// DSN its driver takes.
func parseDSN(dsn string) (migrations.Dialect, string, error) {
	switch {
	case dsn == "":
		return "", "", usagef("no database: set --dsn or $OUTBOX_DSN")
	case strings.HasPrefix(dsn, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite:"), "//")
		if path == "" {
			return "", "", usagef("--dsn %q: want sqlite:path/to/file.db", dsn)
		}
		return migrations.SQLite, path, nil
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return migrations.PostgreSQL, dsn, nil
	case strings.HasPrefix(dsn, "mysql://"):
		rest := strings.TrimPrefix(dsn, "mysql://")
		if strings.Contains(rest, "(") || strings.Contains(rest, "@/") || strings.HasPrefix(rest, "/") {
			return migrations.MySQL, rest, nil
		}
		converted, err := mysqlURL(dsn)
		return migrations.MySQL, converted, err
	case !strings.Contains(dsn, "@") && (strings.Contains(dsn, "host=") || strings.Contains(dsn, "dbname=")):
		return migrations.PostgreSQL, dsn, nil
	}
	if _, err := gomysql.ParseDSN(dsn); err == nil {
		return migrations.MySQL, dsn, nil
	}
	return "", "", usagef("cannot tell the database from the DSN: want postgres://user@host:5432/db, " +
		"user:pass@tcp(host:3306)/db or sqlite:path/to/file.db (see 'outbox help')")
}

// mysqlURL turns mysql://user:pass@host:port/db?params into the driver's
// user:pass@tcp(host:port)/db?params.
func mysqlURL(dsn string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", usagef("--dsn: %v", err)
	}
	userinfo := u.User.Username()
	if pass, ok := u.User.Password(); ok {
		userinfo += ":" + pass
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "3306")
	}
	s := fmt.Sprintf("%s@tcp(%s)/%s", userinfo, addr, strings.TrimPrefix(u.Path, "/"))
	if u.RawQuery != "" {
		s += "?" + u.RawQuery
	}
	return s, nil
}

// actor names the operator in audit records: user@host.
func actor() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); name == "" && err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host
}

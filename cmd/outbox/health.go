package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// probeTimeout bounds each check of a /readyz request.
const probeTimeout = 2 * time.Second

// readiness is what /readyz reports about each dependency of the relay:
// until it is connected, why the last attempt failed; from then on, what a
// probe of it says at the time of the request.
type readiness struct {
	mu   sync.Mutex
	deps []*dependency // in the order of the report
}

type dependency struct {
	name  string
	down  error                       // why it is not connected; used while probe is nil
	probe func(context.Context) error // set once connected
}

// errConnecting is the state of a dependency before its first attempt ends.
var errConnecting = errors.New("connecting")

func newReadiness(names ...string) *readiness {
	r := &readiness{}
	for _, n := range names {
		r.deps = append(r.deps, &dependency{name: n, down: errConnecting})
	}
	return r
}

func (r *readiness) dep(name string) *dependency {
	for _, d := range r.deps {
		if d.name == name {
			return d
		}
	}
	panic("readiness: unknown dependency " + name)
}

// failed records why name could not be connected.
func (r *readiness) failed(name string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dep(name).down = err
}

// connected makes /readyz probe name from now on; with a nil probe, name is
// ready from now on.
func (r *readiness) connected(name string, probe func(context.Context) error) {
	if probe == nil {
		probe = func(context.Context) error { return nil }
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.dep(name)
	d.down, d.probe = nil, probe
}

// check returns each dependency's state in report order, nil when it is
// ready, probing the connected ones concurrently.
func (r *readiness) check(ctx context.Context) []error {
	r.mu.Lock()
	deps := make([]dependency, len(r.deps))
	for i, d := range r.deps {
		deps[i] = *d
	}
	r.mu.Unlock()
	errs := make([]error, len(deps))
	var wg sync.WaitGroup
	for i, d := range deps {
		if d.probe == nil {
			errs[i] = d.down
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, probeTimeout)
			defer cancel()
			errs[i] = d.probe(ctx)
		})
	}
	wg.Wait()
	return errs
}

// ServeHTTP answers 200 when every dependency is ready and 503 otherwise,
// with a line per dependency: "database: ok" or "broker: down: <reason>".
func (r *readiness) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	errs := r.check(req.Context())
	var b strings.Builder
	code := http.StatusOK
	for i, err := range errs {
		if err != nil {
			code = http.StatusServiceUnavailable
			fmt.Fprintf(&b, "%s: down: %v\n", r.deps[i].name, err)
		} else {
			fmt.Fprintf(&b, "%s: ok\n", r.deps[i].name)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(b.String()))
}

// serveHTTP serves on addr, until stop is called:
//
//   - /metrics, the Prometheus metrics of reg;
//   - /healthz, liveness: 200 while the process serves. It checks no
//     dependency: the relay waits for them and retries their errors without
//     dying, so restarting it would not help.
//   - /readyz, readiness: see [readiness].
func serveHTTP(addr string, reg *prometheus.Registry, ready *readiness, logger *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.Handle("GET /readyz", ready)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: slog.NewLogLogger(logger.With("logger", "http").Handler(), slog.LevelWarn)}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics server", "err", err)
		}
	}()
	url := "http://" + strings.Replace(ln.Addr().String(), "[::]", "localhost", 1)
	logger.Info("serving metrics and health", "metrics", url+"/metrics", "healthz", url+"/healthz", "readyz", url+"/readyz")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

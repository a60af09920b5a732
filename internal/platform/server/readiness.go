package server

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// readiness is what /readyz answers from, shared by Server and HTTPServer:
// checks (the instance is ready only while all pass), reports (shown by
// /readyz?verbose, never making the instance unready) and whether the
// process is draining.
type readiness struct {
	draining atomic.Bool

	mu      sync.Mutex
	checks  map[string]Check
	reports map[string]Check
}

func newReadiness() readiness {
	return readiness{checks: map[string]Check{}, reports: map[string]Check{}}
}

// AddCheck adds a readiness check: /readyz (and a gRPC server's health
// status) fail while any check fails.
func (r *readiness) AddCheck(name string, c Check) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checks[name] = c
}

// AddReport adds a dependency that /readyz?verbose reports on without
// making the instance unready: one the instance serves its requests
// without, such as the broker its outbox relay waits for.
func (r *readiness) AddReport(name string, c Check) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reports[name] = c
}

// Ready runs the readiness checks and returns the failures by check name.
func (r *readiness) Ready(ctx context.Context) map[string]string {
	failures := run(ctx, r.copyOf(r.checks))
	if r.draining.Load() {
		failures["server"] = "shutting down"
	}
	return failures
}

func (r *readiness) copyOf(m map[string]Check) map[string]Check {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(m)
}

// run runs checks, each bounded by two seconds, and returns the failures
// by name.
func run(ctx context.Context, checks map[string]Check) map[string]string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	failures := map[string]string{}
	for name, c := range checks {
		if err := c(ctx); err != nil {
			failures[name] = err.Error()
		}
	}
	return failures
}

// serveReady answers 200 "ready" or 503 with the failed checks, one per
// line. With ?verbose it lists every check and every report, each "ok" or
// its failure; a report never makes it 503.
func (r *readiness) serveReady(w http.ResponseWriter, req *http.Request) {
	failures := r.Ready(req.Context())
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if len(failures) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	verbose := req.URL.Query().Has("verbose")
	switch {
	case len(failures) == 0:
		_, _ = w.Write([]byte("ready\n"))
	case verbose:
		_, _ = w.Write([]byte("not ready\n"))
	}
	if !verbose {
		for _, name := range slices.Sorted(maps.Keys(failures)) {
			_, _ = fmt.Fprintf(w, "%s: %s\n", name, failures[name])
		}
		return
	}
	lines := map[string]string{}
	for name := range r.copyOf(r.checks) {
		lines["check "+name] = "ok"
	}
	for name, msg := range failures {
		lines["check "+name] = msg
	}
	reports := r.copyOf(r.reports)
	reportFailures := run(req.Context(), reports)
	for name := range reports {
		msg, failed := reportFailures[name]
		if !failed {
			msg = "ok"
		}
		lines["report "+name] = msg
	}
	for _, key := range slices.Sorted(maps.Keys(lines)) {
		_, _ = fmt.Fprintf(w, "%s: %s\n", key, lines[key])
	}
}

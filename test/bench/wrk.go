package main

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"time"
)

// wrk's summary lines, as wrk 4 prints them.
var (
	wrkRate     = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses:\s+([0-9]+)`)
	wrkSocket   = regexp.MustCompile(`Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)`)
	wrkRequests = regexp.MustCompile(`([0-9]+) requests in`)
)

// wrkMax measures the maximum rate of GET url with wrk: one thread (the
// machine has two cores, and the system under test needs them) driving
// clients keep-alive connections for d. wrk, written in C around epoll,
// costs a fraction of the CPU per request of Go's HTTP client, so more of
// the machine is left to the gateway and catalog, as with gRPC's client.
//
// It also returns the CPU time wrk used.
func wrkMax(ctx context.Context, binary, url string, clients int, d time.Duration) (loadResult, time.Duration, error) {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	cmd := exec.CommandContext(ctx, binary, "-t1", "-c"+strconv.Itoa(clients), "-d"+strconv.Itoa(secs)+"s", url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return loadResult{}, 0, fmt.Errorf("wrk: %w\n%s", err, out)
	}
	used := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	m := wrkRate.FindSubmatch(out)
	if m == nil || wrkRequests.FindSubmatch(out) == nil {
		return loadResult{}, 0, fmt.Errorf("wrk printed no request rate:\n%s", out)
	}
	r := loadResult{}
	if r.rps, err = strconv.ParseFloat(string(m[1]), 64); err != nil {
		return loadResult{}, 0, fmt.Errorf("wrk rate %q: %w", m[1], err)
	}
	if m := wrkNon2xx.FindSubmatch(out); m != nil {
		n, _ := strconv.ParseInt(string(m[1]), 10, 64)
		r.errors += n
	}
	if m := wrkSocket.FindSubmatch(out); m != nil {
		for _, g := range m[1:] {
			n, _ := strconv.ParseInt(string(g), 10, 64)
			r.errors += n
		}
	}
	return r, used, nil
}

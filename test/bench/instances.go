package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// What the scale and kill parts need to see of a system that runs several
// instances of a service: where each instance is (targets.json), which
// process it is (the launcher's log), and what it has served (its
// /metrics).

// migrateReplicated applies the migrations of every service that replicas
// names with more than one instance, before `mercato up` starts them.
// Instances that start together on a fresh SQLite file each apply the
// migrations, and all but the first fail ("table products already
// exists"), which ends `mercato up`; on a database that is already
// migrated every instance finds nothing to do.
func migrateReplicated(ctx context.Context, binary, dataDir, replicas string) error {
	for pair := range strings.SplitSeq(replicas, ",") {
		name, count, ok := strings.Cut(strings.TrimSpace(pair), "=")
		n, err := strconv.Atoi(count)
		if !ok || err != nil {
			return fmt.Errorf("replicas %q: want service=count pairs", replicas)
		}
		if n < 2 {
			continue
		}
		cmd := exec.CommandContext(ctx, binary, "migrate", name)
		cmd.Env = append(os.Environ(), "DATABASE_URL="+filepath.Join(dataDir, name+".db"))
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("mercato migrate %s: %w\n%s", name, err, out)
		}
	}
	return nil
}

// target is one running instance as targets.json lists it.
type target struct {
	instance, service string
	admin             string // host:port of its admin HTTP server (/readyz, /metrics)
}

// instancesOf reads <data>/targets.json, which `mercato up` keeps for
// Prometheus (file_sd), and returns service's instances in id order.
func instancesOf(sys *system, service string) ([]target, error) {
	b, err := os.ReadFile(filepath.Join(sys.dataDir, "targets.json"))
	if err != nil {
		return nil, fmt.Errorf("read targets.json: %w", err)
	}
	var entries []struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	if err := json.Unmarshal(b, &entries); err != nil {
		return nil, fmt.Errorf("targets.json: %w", err)
	}
	var out []target
	for _, e := range entries {
		if e.Labels["service"] != service {
			continue
		}
		for _, addr := range e.Targets {
			out = append(out, target{instance: e.Labels["instance"], service: service, admin: addr})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("targets.json lists no %s instance", service)
	}
	// catalog-10 after catalog-9
	slices.SortFunc(out, func(a, b target) int {
		return cmpInstance(a.instance, b.instance)
	})
	return out, nil
}

func cmpInstance(a, b string) int {
	an, aerr := strconv.Atoi(a[strings.LastIndexByte(a, '-')+1:])
	bn, berr := strconv.Atoi(b[strings.LastIndexByte(b, '-')+1:])
	if aerr != nil || berr != nil || an == bn {
		return strings.Compare(a, b)
	}
	return an - bn
}

// scrape returns the text of an admin server's /metrics.
func scrape(ctx context.Context, admin string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("metrics of %s: %w", admin, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("metrics of %s: %w", admin, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("metrics of %s: status %d", admin, resp.StatusCode)
	}
	return string(b), nil
}

// metricSum adds up the samples of metric name (Prometheus text format)
// whose labels contain every one of matchers (e.g. `grpc_method="GetProduct"`).
func metricSum(text, name string, matchers ...string) float64 {
	var sum float64
	for line := range strings.SplitSeq(text, "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		labels := ""
		if rest[0] == '{' {
			end := strings.IndexByte(rest, '}')
			if end < 0 {
				continue
			}
			labels, rest = rest[:end+1], rest[end+1:]
		}
		if !allIn(labels, matchers) {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(fields[0], 64); err == nil {
			sum += v
		}
	}
	return sum
}

func allIn(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// getProductCalls is how many GetProduct calls each instance has handled
// so far, whatever their status (grpc_server_handled_total).
func getProductCalls(ctx context.Context, instances []target) (map[string]float64, error) {
	out := map[string]float64{}
	for _, t := range instances {
		text, err := scrape(ctx, t.admin)
		if err != nil {
			return nil, err
		}
		out[t.instance] = metricSum(text, "grpc_server_handled_total", `grpc_method="GetProduct"`)
	}
	return out, nil
}

// servicePIDs lists the launcher's children (`mercato serve <service>`) by
// service, every instance of a replicated one.
func servicePIDs(launcher int) map[string][]int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	out := map[string][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || parentOf(pid) != launcher {
			continue
		}
		if svc := servedBy(pid); svc != "" {
			out[svc] = append(out[svc], pid)
		}
	}
	return out
}

// parentOf is pid's parent, or 0 when pid is gone.
func parentOf(pid int) int {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(fields) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(fields[1])
	return ppid
}

// servedBy is the service pid runs (`mercato serve <service>`), or "".
func servedBy(pid int) string {
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if len(args) < 3 || args[1] != "serve" {
		return ""
	}
	return args[2]
}

// processGone reports whether pid has ended: no longer in /proc, or a
// zombie. A zombie has closed its files, its listening sockets included.
func processGone(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	return len(fields) == 0 || fields[0] == "Z" || fields[0] == "X"
}

// launcherEvent is one line the launcher itself logged (JSON format).
type launcherEvent struct {
	Time      time.Time `json:"time"`
	Msg       string    `json:"msg"`
	Name      string    `json:"name"`
	PID       int       `json:"pid"`
	Status    string    `json:"status"`
	RestartIn string    `json:"restart_in"`
}

// The launcher's messages the kill part follows.
const (
	msgStarted   = "service started"
	msgRestarted = "service restarted"
	msgExited    = "service exited unexpectedly; restarting"
	msgGaveUp    = "service keeps exiting: given up on, the rest keep running"
)

// logFollower reads the launcher's own lines of a system's log as they
// are written. `mercato up` writes them at once (the services' lines may
// wait in their buffers, the launcher's do not) and, writing to a file,
// as JSON, each prefixed with the padded label "mercato" and "| ".
type logFollower struct {
	f    *os.File
	off  int64
	rest []byte // a line not yet ended
}

// events returns the launcher's lines written since the last call.
func (l *logFollower) events() ([]launcherEvent, error) {
	info, err := l.f.Stat()
	if err != nil {
		return nil, err
	}
	if info.Size() <= l.off {
		return nil, nil
	}
	buf := make([]byte, info.Size()-l.off)
	n, err := l.f.ReadAt(buf, l.off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	l.off += int64(n)
	data := slices.Concat(l.rest, buf[:n])
	end := bytes.LastIndexByte(data, '\n')
	if end < 0 {
		l.rest = data
		return nil, nil
	}
	l.rest = slices.Clone(data[end+1:])
	var out []launcherEvent
	for line := range bytes.SplitSeq(data[:end], []byte("\n")) {
		label, body, ok := bytes.Cut(line, []byte("| "))
		if !ok || string(bytes.TrimSpace(label)) != launcherLabel || len(body) == 0 || body[0] != '{' {
			continue
		}
		var e launcherEvent
		if json.Unmarshal(body, &e) == nil {
			out = append(out, e)
		}
	}
	return out, nil
}

// launcherLabel labels the launcher's own lines in the log.
const launcherLabel = "mercato"

package launcher

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// instance is one process of a service. A service with replicas has
// several, each with its own ports, which it keeps across restarts so its
// callers' address lists stay true.
type instance struct {
	service string
	// id names the instance everywhere ("catalog-2"): its saga leases,
	// its metrics target; label names it in the log, the service's name
	// alone when it runs once.
	id, label string
	addrs     ServiceAddrs
	child     *child

	// Supervision: when it last started, how many times in a row it died
	// soon after, its recent unexpected exits, and whether the launcher
	// gave up on it.
	startedAt time.Time
	failures  int
	exits     []time.Time
	gaveUp    bool
}

// newInstances lists the processes cfg runs, in start order.
func newInstances(cfg Config) []*instance {
	var list []*instance
	for _, svc := range cfg.Services {
		n := cfg.replicasOf(svc)
		for i := 1; i <= n; i++ {
			inst := &instance{service: svc, id: svc + "-" + strconv.Itoa(i), label: svc}
			if n > 1 {
				inst.label = inst.id
			}
			list = append(list, inst)
		}
	}
	return list
}

func labels(list []*instance) []string {
	out := make([]string, len(list))
	for i, inst := range list {
		out[i] = inst.label
	}
	return out
}

// running reports whether the instance's process is up.
func (inst *instance) running() bool {
	return inst.child != nil && !inst.child.exited() && !inst.gaveUp
}

// Supervision: a process that dies is started again after restartBackoff,
// doubling with every death that comes soon after a start up to
// maxRestartBackoff; one that dies crashLoopExits times within
// crashLoopWindow is given up on while the rest keep running.
const (
	restartBackoff    = 100 * time.Millisecond
	maxRestartBackoff = 10 * time.Second
	crashLoopExits    = 5
	crashLoopWindow   = time.Minute
	// healthyRun is how long a process must run for its next death to
	// start the backoff afresh.
	healthyRun = 30 * time.Second
)

// exited records an unexpected exit at now and returns how long to wait
// before starting the instance again, or false when it is in a crash loop.
func (inst *instance) exited(now time.Time) (time.Duration, bool) {
	inst.exits = slices.DeleteFunc(inst.exits, func(at time.Time) bool { return now.Sub(at) >= crashLoopWindow })
	inst.exits = append(inst.exits, now)
	if len(inst.exits) >= crashLoopExits {
		inst.gaveUp = true
		return 0, false
	}
	if now.Sub(inst.startedAt) >= healthyRun {
		inst.failures = 0
	}
	backoff := restartBackoff << min(inst.failures, 7)
	inst.failures++
	return min(backoff, maxRestartBackoff), true
}

// targetsFile is where `mercato up` lists the running instances' admin
// addresses for Prometheus (file_sd).
const targetsFile = "targets.json"

// fileSDTarget is one entry of Prometheus's file_sd format.
type fileSDTarget struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// writeTargets replaces <dir>/targets.json with the running instances,
// atomically (a rename), so Prometheus never reads half a file.
func writeTargets(dir string, list []*instance) error {
	targets := []fileSDTarget{}
	for _, inst := range list {
		if inst.running() {
			targets = append(targets, fileSDTarget{
				Targets: []string{inst.addrs.HTTP},
				Labels:  map[string]string{"service": inst.service, "instance": inst.id},
			})
		}
	}
	b, err := json.MarshalIndent(targets, "", "  ")
	if err != nil {
		return fmt.Errorf("encode targets: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".targets-*.json")
	if err != nil {
		return fmt.Errorf("write targets: %w", err)
	}
	defer os.Remove(tmp.Name()) //nolint:errcheck // gone after the rename
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write targets: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write targets: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write targets: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, targetsFile)); err != nil {
		return fmt.Errorf("write targets: %w", err)
	}
	return nil
}

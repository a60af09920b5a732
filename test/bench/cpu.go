package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc/<pid>/stat:
// 100 on every Linux platform Go supports.
const clockTicks = 100

// cpuGroup names a set of processes whose CPU time is added up: one
// service, the load generator, or every PostgreSQL backend.
type cpuGroup struct {
	name string
	pids func() []int
}

// cpuSnapshot is the CPU time used so far by each group's processes (per
// pid, so a process that appears later is counted from zero) and by the
// whole machine.
type cpuSnapshot struct {
	at        time.Time
	groups    map[string]map[int]int64
	machine   int64 // busy ticks of all CPUs
	machineAt int64 // all ticks of all CPUs
}

func takeCPUSnapshot(groups []cpuGroup) cpuSnapshot {
	s := cpuSnapshot{at: time.Now(), groups: map[string]map[int]int64{}}
	for _, g := range groups {
		m := map[int]int64{}
		for _, pid := range g.pids() {
			if t, ok := processTicks(pid); ok {
				m[pid] = t
			}
		}
		s.groups[g.name] = m
	}
	s.machine, s.machineAt = machineTicks()
	return s
}

// cpuUse is one group's CPU time between two snapshots.
type cpuUse struct {
	name    string
	seconds float64
}

// cpuReport is what happened between two snapshots.
type cpuReport struct {
	elapsed time.Duration
	groups  []cpuUse
	// busy is the CPU time of the whole machine (every process, including
	// anything outside the benchmark), capacity all of its CPU time.
	busy, capacity float64
}

func cpuBetween(groups []cpuGroup, from, to cpuSnapshot) cpuReport {
	r := cpuReport{
		elapsed:  to.at.Sub(from.at),
		busy:     float64(to.machine-from.machine) / clockTicks,
		capacity: float64(to.machineAt-from.machineAt) / clockTicks,
	}
	for _, g := range groups {
		var ticks int64
		for pid, t := range to.groups[g.name] {
			ticks += t - from.groups[g.name][pid] // a pid new since from counts from 0
		}
		r.groups = append(r.groups, cpuUse{name: g.name, seconds: float64(ticks) / clockTicks})
	}
	return r
}

// plus adds o's times to r's; both must have the same groups.
func (r cpuReport) plus(o cpuReport) cpuReport {
	if r.groups == nil {
		return o
	}
	sum := cpuReport{elapsed: r.elapsed + o.elapsed, busy: r.busy + o.busy, capacity: r.capacity + o.capacity}
	for i, g := range r.groups {
		sum.groups = append(sum.groups, cpuUse{name: g.name, seconds: g.seconds + o.groups[i].seconds})
	}
	return sum
}

// charge adds seconds of CPU time to the group called name.
func (r cpuReport) charge(name string, seconds float64) {
	for i := range r.groups {
		if r.groups[i].name == name {
			r.groups[i].seconds += seconds
		}
	}
}

// other is the machine's CPU time that no group accounts for.
func (r cpuReport) other() float64 {
	var accounted float64
	for _, g := range r.groups {
		accounted += g.seconds
	}
	return max(r.busy-accounted, 0)
}

// processTicks is the user+system CPU time of pid, in clock ticks.
func processTicks(pid int) (int64, bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// Fields after the parenthesised command name start at field 3
	// (state); utime and stime are fields 14 and 15.
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(fields) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return utime + stime, true
}

// machineTicks reads the aggregate line of /proc/stat: busy ticks and all
// ticks over every CPU.
func machineTicks() (busy, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line)
	if len(fields) < 8 || fields[0] != "cpu" {
		return 0, 0
	}
	// user nice system idle iowait irq softirq steal [guest guest_nice],
	// guest time being already part of user.
	for i, f := range fields[1:min(len(fields), 9)] {
		n, _ := strconv.ParseInt(f, 10, 64)
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

// pidsNamed returns every process whose command name is comm (e.g. every
// PostgreSQL server process).
func pidsNamed(comm string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		name, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err == nil && strings.TrimSpace(string(name)) == comm {
			out = append(out, pid)
		}
	}
	return out
}

// loadAverage is the first three fields of /proc/loadavg.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"time"
)

// The scale part: the gateway's maximum rate of GET /api/v1/products/{id}
// on a system with one catalog and on one with several, measured as the
// read part measures the gateway (closed loops, rounds, the median of the
// best concurrency), with each catalog instance's share of the calls read
// from its own /metrics.

// scaleSystem is one of the two systems of the scale part and what was
// measured on it.
type scaleSystem struct {
	label    string
	replicas int
	sys      *system
	url      string
	catalogs []target
	groups   []cpuGroup

	rates    map[int][]float64 // every round's rate, by concurrency
	errors   int64
	cpu      cpuReport
	requests float64            // requests made in all the runs
	calls    map[string]float64 // GetProduct calls each catalog instance handled in them
	max      float64
	clients  int
}

func scalePart(ctx context.Context, binary string, o options) (err error) {
	systems := []*scaleSystem{
		{label: "1 catalog", replicas: 1},
		{label: fmt.Sprintf("%d catalogs", o.scaleReplicas), replicas: o.scaleReplicas},
	}
	for _, s := range systems {
		spec := ""
		if s.replicas > 1 {
			spec = fmt.Sprintf("catalog=%d", s.replicas)
		}
		fmt.Fprintf(os.Stderr, "bench: starting mercato up (SQLite, %s) for the scale part\n", s.label)
		sys, err := startSystemWith(ctx, binary, "", spec)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, sys.stop()) }()
		s.sys = sys
		if s.catalogs, err = instancesOf(sys, "catalog"); err != nil {
			return err
		}
		if len(s.catalogs) != s.replicas {
			return fmt.Errorf("%s: targets.json lists %d catalog instances", s.label, len(s.catalogs))
		}
		id, err := firstProductID(ctx, sys.base)
		if err != nil {
			return err
		}
		s.url = sys.base + "/api/v1/products/" + id
		s.rates, s.calls = map[int][]float64{}, map[string]float64{}
	}
	systems[0].groups = scaleCPUGroups(systems[0].sys, systems[1].sys)
	systems[1].groups = scaleCPUGroups(systems[1].sys, systems[0].sys)

	tool := "Go's net/http client"
	wrkPath, err := exec.LookPath(o.wrk)
	if err == nil {
		tool = "wrk"
	} else {
		fmt.Fprintf(os.Stderr, "bench: %s not found (apt-get install wrk); measuring with Go's HTTP client, which costs more CPU per request\n", o.wrk)
	}
	// Both systems stay up, and take turns at every concurrency of every
	// round, as the two paths of the read part do.
	for round := range o.rounds {
		for _, clients := range o.concurrency {
			for _, s := range systems {
				fmt.Fprintf(os.Stderr, "bench: scale round %d of %d, %d clients, %s\n", round+1, o.rounds, clients, s.label)
				callsBefore, err := getProductCalls(ctx, s.catalogs)
				if err != nil {
					return err
				}
				before := takeCPUSnapshot(s.groups)
				var res loadResult
				var wrkCPU time.Duration
				if tool == "wrk" {
					if res, wrkCPU, err = wrkMax(ctx, wrkPath, s.url, clients, o.duration); err != nil {
						return err
					}
				} else {
					res = closedLoop(httpGetProduct(s.url, clients), clients, o.duration)
				}
				after := takeCPUSnapshot(s.groups)
				callsAfter, err := getProductCalls(ctx, s.catalogs)
				if err != nil {
					return err
				}
				report := cpuBetween(s.groups, before, after)
				report.charge(loadGeneratorGroup, wrkCPU.Seconds())
				s.cpu = s.cpu.plus(report)
				s.requests += res.rps * after.at.Sub(before.at).Seconds()
				s.errors += res.errors
				s.rates[clients] = append(s.rates[clients], res.rps)
				for id, n := range callsAfter {
					s.calls[id] += n - callsBefore[id]
				}
			}
		}
	}
	for _, s := range systems {
		for _, clients := range o.concurrency {
			if m := median(s.rates[clients]); m > s.max {
				s.max, s.clients = m, clients
			}
		}
	}
	printScale(systems, o, tool)
	return nil
}

// scaleCPUGroups are the processes of sys whose CPU time the scale part
// reports, and the other system, idle meanwhile, as one row.
func scaleCPUGroups(sys, other *system) []cpuGroup {
	launcher, idle := sys.cmd.Process.Pid, other.cmd.Process.Pid
	pids := servicePIDs(launcher)
	var rest []int
	for svc, list := range pids {
		if svc != "gateway" && svc != "catalog" {
			rest = append(rest, list...)
		}
	}
	idlePIDs := []int{idle}
	for _, list := range servicePIDs(idle) {
		idlePIDs = append(idlePIDs, list...)
	}
	fixed := func(list []int) func() []int { return func() []int { return list } }
	return []cpuGroup{
		{name: "gateway", pids: fixed(pids["gateway"])},
		{name: "catalog (every instance)", pids: fixed(pids["catalog"])},
		{name: "the other services", pids: fixed(rest)},
		{name: "mercato up (launcher, embedded NATS)", pids: fixed([]int{launcher})},
		{name: loadGeneratorGroup, pids: func() []int { return []int{os.Getpid()} }},
		{name: "the other system, idle (all its processes)", pids: fixed(idlePIDs)},
	}
}

func printScale(systems []*scaleSystem, o options, tool string) {
	one, many := systems[0], systems[1]
	fmt.Printf("\n## GET one product through the gateway: %s against %s\n\n", one.label, many.label)
	fmt.Printf("Two systems on SQLite side by side, one with a single catalog process and one with %d "+
		"(sharing one database file; the gateway balances over them, round robin). "+
		"Maximum: closed loops of %s concurrent clients (%s over keep-alive connections), %d rounds in which the two systems take turns at every concurrency, "+
		"%s per run; each system's maximum is the median of its best concurrency. On %d CPUs more processes share the same cores: "+
		"this shows what balancing costs, not a speed-up.\n\n",
		many.replicas, intList(o.concurrency), tool, o.rounds, o.duration, runtime.NumCPU())
	fmt.Printf("| clients | %s req/s, every round | median | %s req/s, every round | median |\n|---|---|---|---|---|\n", one.label, many.label)
	for _, clients := range o.concurrency {
		fmt.Printf("| %d | %s | %.0f | %s | %.0f |\n", clients,
			rateList(one.rates[clients]), median(one.rates[clients]), rateList(many.rates[clients]), median(many.rates[clients]))
	}
	fmt.Printf("\n| system | max req/s | at clients | errors |\n|---|---|---|---|\n")
	for _, s := range systems {
		fmt.Printf("| %s | %.0f | %d | %d |\n", s.label, s.max, s.clients, s.errors)
	}
	if one.max > 0 {
		fmt.Printf("\n%s / %s = **%.0f%%**\n", many.label, one.label, 100*many.max/one.max)
	}

	fmt.Printf("\nGetProduct calls each catalog instance handled in all the runs (`grpc_server_handled_total{grpc_method=\"GetProduct\"}` from its own /metrics):\n\n")
	fmt.Printf("| system | instance | calls | share |\n|---|---|---|---|\n")
	for _, s := range systems {
		var total float64
		for _, t := range s.catalogs {
			total += s.calls[t.instance]
		}
		for _, t := range s.catalogs {
			fmt.Printf("| %s | %s | %.0f | %.1f%% |\n", s.label, t.instance, s.calls[t.instance], pct(s.calls[t.instance], total))
		}
		fmt.Printf("| %s | all (requests made: about %.0f) | %.0f | |\n", s.label, s.requests, total)
	}

	fmt.Printf("\nCPU time during the runs (every process shares the same %d CPUs), and per request:\n\n", runtime.NumCPU())
	fmt.Printf("| process | %s: share of the machine | µs per request | %s: share of the machine | µs per request |\n|---|---|---|---|---|\n", one.label, many.label)
	for i, g := range one.cpu.groups {
		h := many.cpu.groups[i]
		fmt.Printf("| %s | %.0f%% | %.0f | %.0f%% | %.0f |\n", g.name,
			pct(g.seconds, one.cpu.capacity), 1e6*g.seconds/max(one.requests, 1), pct(h.seconds, many.cpu.capacity), 1e6*h.seconds/max(many.requests, 1))
	}
	fmt.Printf("| everything else on the machine | %.0f%% | | %.0f%% | |\n", pct(one.cpu.other(), one.cpu.capacity), pct(many.cpu.other(), many.cpu.capacity))
	fmt.Printf("| idle | %.0f%% | | %.0f%% | |\n", pct(one.cpu.capacity-one.cpu.busy, one.cpu.capacity), pct(many.cpu.capacity-many.cpu.busy, many.cpu.capacity))
}

package main

import (
	"fmt"
	"strings"
	"time"
)

// Targets the figures are printed beside. Nothing fails when one is
// missed: a benchmark on a shared machine is a measurement, not a test.
const (
	targetReady          = 3 * time.Second
	targetIdleRSSMiB     = 40
	targetGatewayShare   = 0.5
	targetCheckoutRate   = 150
	targetCheckoutP99    = 500 * time.Millisecond
	targetCheckoutEngine = "PostgreSQL"
)

func printPgbench(r pgbenchResult, cfg pgbenchConfig) {
	fmt.Printf("\n## pgbench on the same server\n\n")
	fmt.Printf("`pgbench -i -s %d` on a scratch database (initialised in %s, dropped after), then `%s` (the default TPC-B-like script) against %s. "+
		"`SHOW synchronous_commit` on that database: **%s** (fsync=%s). No mercato process runs meanwhile.\n\n",
		cfg.scale, r.initDuration.Round(100*time.Millisecond), r.commandLine, redact(cfg.serverURL), r.settings.synchronousCommit, r.settings.fsync)
	fmt.Printf("| tps | latency average | transactions | failed |\n|---|---|---|---|\n")
	fmt.Printf("| **%.0f** | %s | %d | %d |\n", r.tps, r.latency, r.transactions, r.failed)
}

func printSummary(s summary) {
	fmt.Printf("\n## Against the targets\n\n| target | figure | met |\n|---|---|---|\n")
	if ready, ok := readyTimes(s); len(ready) > 0 {
		fmt.Printf("| `mercato up` ready < %s | %s | %s |\n", targetReady, strings.Join(ready, "; "), yes(ok))
	}
	if r := s.read; r != nil {
		var largest memory
		name := ""
		for n, m := range r.memory {
			if m.rssKiB > largest.rssKiB || (m.rssKiB == largest.rssKiB && n < name) {
				largest, name = m, n
			}
		}
		fmt.Printf("| every idle service < %d MiB RSS | largest: %s %s (private %s, PSS %s) | %s |\n", targetIdleRSSMiB,
			name, mib(largest.rssKiB), mib(largest.anonKiB), mib(largest.pssKiB), yes(largest.rssKiB < targetIdleRSSMiB*1024))
		fmt.Printf("| gateway ≥ %.0f%% of direct gRPC (GET one product) | %.0f%% (%.0f vs %.0f req/s) | %s |\n",
			100*targetGatewayShare, 100*r.gatewayOf, r.httpMax.rps, r.grpcMax.rps, yes(r.gatewayOf >= targetGatewayShare))
	}
	for _, c := range s.checkouts {
		if c.engine == targetCheckoutEngine {
			fmt.Printf("| ≥ %d confirmed checkouts/s with p99 < %s, on %s | %.1f/s, p99 %s | %s |\n",
				targetCheckoutRate, targetCheckoutP99, targetCheckoutEngine, c.rate, ms(c.toConfirm.p99),
				yes(c.rate >= targetCheckoutRate && c.toConfirm.p99 < targetCheckoutP99))
		} else {
			fmt.Printf("| checkout on %s (no target, for comparison) | %.1f/s, p99 %s | – |\n", c.engine, c.rate, ms(c.toConfirm.p99))
		}
	}
	if s.pgbench == nil {
		return
	}
	for _, c := range s.checkouts {
		if c.commits == nil {
			continue
		}
		commitRate := float64(c.totalCommits()) / c.cfg.duration.Seconds()
		fmt.Printf("\nPostgreSQL yardstick: pgbench **%.0f tps**; checkout on PostgreSQL **%.1f confirmed/s** = %.1f%% of it "+
			"(the services committed %.0f transactions/s meanwhile = %.0f%% of pgbench's rate, %.1f per confirmed checkout).\n",
			s.pgbench.tps, c.rate, pct(c.rate, s.pgbench.tps), commitRate, pct(commitRate, s.pgbench.tps), float64(c.totalCommits())/float64(max(c.confirmed, 1)))
	}
}

// readyTimes lists the start-up time of every system the run started, and
// whether all were under the target.
func readyTimes(s summary) ([]string, bool) {
	var out []string
	ok := true
	add := func(d time.Duration, what string) {
		out = append(out, fmt.Sprintf("%s (%s)", d.Round(time.Millisecond), what))
		ok = ok && d < targetReady
	}
	if s.read != nil {
		add(s.read.ready, "SQLite, read run")
	}
	for _, c := range s.checkouts {
		add(c.ready, c.engine+", checkout run")
	}
	return out, ok
}

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

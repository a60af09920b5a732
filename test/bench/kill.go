package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// The kill part: how long `mercato up` takes to replace a catalog instance
// killed with SIGKILL, from the kill to the new process answering 200 on
// its /readyz (same admin address as the old one), kill after kill.

type killConfig struct {
	kills    int           // SIGKILLs in all
	replicas int           // catalog instances
	after    time.Duration // how long an instance has run before it is killed
	gap      time.Duration // from one replacement being ready to the next kill
	rate     float64       // product reads per second through the gateway meanwhile
}

// Supervision rules of `mercato up` the schedule has to respect: an
// instance that exits 5 times within a minute is given up on, and the
// restart backoff starts afresh (100 ms) only for a death at least 30 s
// after the last start.
const (
	launcherHealthyRun = 30 * time.Second
	// minKillAfter keeps an instance's exits at least 15 s apart: 5 of
	// them then span at least a minute, so the crash-loop rule never
	// applies.
	minKillAfter = 15 * time.Second
	// killTimeout bounds one replacement.
	killTimeout = time.Minute
)

// liveInstance is a catalog instance as the kill part follows it.
type liveInstance struct {
	target
	pid     int
	started time.Time // the launcher's "service started"
}

type killRecord struct {
	instance       string
	oldPID, newPID int
	restartIn      string        // the backoff the launcher announced
	gone           time.Duration // kill → the old process ended
	started        time.Duration // kill → the launcher started the new one
	ready          time.Duration // kill → the new one's first 200 on /readyz
	// kill → the first GetProduct call the new one handled, when reads
	// go through the gateway meanwhile (0: none within firstCallTimeout)
	firstCall time.Duration
}

// firstCallTimeout bounds the wait for the gateway's first call to a new
// process.
const firstCallTimeout = 30 * time.Second

func killPart(ctx context.Context, binary string, cfg killConfig) (err error) {
	spec := fmt.Sprintf("catalog=%d", cfg.replicas)
	fmt.Fprintf(os.Stderr, "bench: starting mercato up (SQLite, --replicas %s) for the kill part\n", spec)
	sys, err := startSystemWith(ctx, binary, "", spec)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, sys.stop()) }()
	catalogs, err := instancesOf(sys, "catalog")
	if err != nil {
		return err
	}
	// With one instance the launcher labels it "catalog", with more by id.
	label := func(t target) string {
		if cfg.replicas == 1 {
			return t.service
		}
		return t.instance
	}
	follow := &logFollower{f: sys.logs}
	events, err := follow.events()
	if err != nil {
		return err
	}
	var live []*liveInstance
	for _, t := range catalogs {
		inst := &liveInstance{target: t}
		for _, e := range events {
			if e.Msg == msgStarted && e.Name == label(t) {
				inst.pid, inst.started = e.PID, e.Time
			}
		}
		if inst.pid == 0 {
			return fmt.Errorf("the launcher's log names no process of %s", t.instance)
		}
		live = append(live, inst)
	}
	productID, err := firstProductID(ctx, sys.base)
	if err != nil {
		return err
	}
	var load *steadyLoad
	if cfg.rate > 0 {
		load = startSteadyLoad(sys.base+"/api/v1/products/"+productID, cfg.rate)
	}
	start := time.Now()
	probe := &http.Client{Timeout: 500 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	var records []killRecord
	var lastReady time.Time
	for k := range cfg.kills {
		v := live[k%len(live)]
		// Scheduled, not waiting for a result: the victim must have run
		// long enough for the launcher to count it healthy, and the
		// previous replacement must have had time to be found again by
		// the gateway (it reconnects with a backoff of its own).
		at := v.started.Add(cfg.after)
		if next := lastReady.Add(cfg.gap); next.After(at) {
			at = next
		}
		if wait := time.Until(at); wait > 0 {
			fmt.Fprintf(os.Stderr, "bench: kill %d of %d: %s in %s\n", k+1, cfg.kills, v.instance, wait.Round(100*time.Millisecond))
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		}
		rec, err := killOnce(ctx, sys, follow, probe, v, label(v.target), load != nil)
		if err != nil {
			return fmt.Errorf("kill %d (%s): %w", k+1, v.instance, err)
		}
		lastReady = time.Now()
		records = append(records, rec)
		fmt.Fprintf(os.Stderr, "bench: kill %d of %d: %s (pid %d → %d) ready after %s\n",
			k+1, cfg.kills, v.instance, rec.oldPID, rec.newPID, rec.ready.Round(time.Millisecond))
	}
	elapsed := time.Since(start)
	var reads *steadyResult
	if load != nil {
		r := load.stop()
		reads = &r
	}
	printKills(records, cfg, elapsed, reads)
	return nil
}

// killOnce kills v's process and waits until the launcher's new process
// for it answers 200 on /readyz. The answer is known to come from the new
// process: the probe is sent only once the old one has ended (the port is
// the same), the launcher logged the start of a process with another pid,
// and that process's start time (process_start_time_seconds) is later.
//
// With watchCalls, it then also waits (at most firstCallTimeout) for the
// new process's first GetProduct call, which comes through the gateway.
func killOnce(ctx context.Context, sys *system, follow *logFollower, probe *http.Client, v *liveInstance, label string, watchCalls bool) (killRecord, error) {
	rec := killRecord{instance: v.instance, oldPID: v.pid}
	launcher := sys.cmd.Process.Pid
	if parentOf(v.pid) != launcher || servedBy(v.pid) != v.service {
		return rec, fmt.Errorf("pid %d is not %s under this mercato up", v.pid, v.instance)
	}
	text, err := scrape(ctx, v.admin)
	if err != nil {
		return rec, err
	}
	oldStart := metricSum(text, "process_start_time_seconds")
	// Drop what the launcher logged before the kill.
	if _, err := follow.events(); err != nil {
		return rec, err
	}

	deadline := time.Now().Add(killTimeout)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	killedAt := time.Now()
	if err := syscall.Kill(v.pid, syscall.SIGKILL); err != nil {
		return rec, fmt.Errorf("kill pid %d: %w", v.pid, err)
	}
	var startedAt time.Time
	gone, ready := false, false
	for !ready || rec.newPID == 0 {
		select {
		case <-ctx.Done():
			return rec, ctx.Err()
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return rec, fmt.Errorf("not back within %s (gone: %t, new pid: %d, ready: %t)", killTimeout, gone, rec.newPID, ready)
		}
		events, err := follow.events()
		if err != nil {
			return rec, err
		}
		for _, e := range events {
			if e.Name != label {
				continue
			}
			switch e.Msg {
			case msgStarted:
				if e.PID != v.pid {
					rec.newPID, startedAt = e.PID, e.Time
				}
			case msgExited:
				rec.restartIn = e.RestartIn
			case msgGaveUp:
				return rec, fmt.Errorf("the launcher gave up on %s (%s)", v.instance, e.Status)
			}
		}
		if !gone && processGone(v.pid) {
			gone, rec.gone = true, time.Since(killedAt)
		}
		if gone && !ready && readyz(ctx, probe, v.admin) {
			ready, rec.ready = true, time.Since(killedAt)
		}
	}
	rec.started = startedAt.Sub(killedAt)

	if parentOf(rec.newPID) != launcher || servedBy(rec.newPID) != v.service {
		return rec, fmt.Errorf("new pid %d is not %s under this mercato up", rec.newPID, v.instance)
	}
	if text, err = scrape(ctx, v.admin); err != nil {
		return rec, err
	}
	if newStart := metricSum(text, "process_start_time_seconds"); newStart <= oldStart {
		return rec, fmt.Errorf("the process at %s started at %.2f, not after the killed one (%.2f)", v.admin, newStart, oldStart)
	}
	v.pid, v.started = rec.newPID, startedAt
	if !watchCalls {
		return rec, nil
	}
	wait := time.NewTicker(5 * time.Millisecond)
	defer wait.Stop()
	for giveUp := time.Now().Add(firstCallTimeout); time.Now().Before(giveUp); {
		select {
		case <-ctx.Done():
			return rec, ctx.Err()
		case <-wait.C:
		}
		calls, err := getProductCalls(ctx, []target{v.target})
		if err != nil {
			return rec, err
		}
		if calls[v.instance] > 0 {
			rec.firstCall = time.Since(killedAt)
			break
		}
	}
	return rec, nil
}

// readyz reports whether the admin server at addr answers 200 on /readyz.
func readyz(ctx context.Context, client *http.Client, addr string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// steadyLoad reads one product through the gateway at a fixed rate (open
// loop) while instances are killed, to show whether the public API kept
// answering.
type steadyLoad struct {
	cancel context.CancelFunc
	done   chan struct{}
	start  time.Time

	mu     sync.Mutex
	hist   *hdrhistogram.Histogram
	sent   atomic.Int64
	failed atomic.Int64
	first  []string // the first few failures
}

type steadyResult struct {
	rate           float64
	sent, failed   int64
	p50, p99, maxL time.Duration
	first          []string
}

func startSteadyLoad(url string, rate float64) *steadyLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &steadyLoad{cancel: cancel, done: make(chan struct{}), start: time.Now(), hist: newHistogram()}
	get := httpGetProduct(url, 16)
	interval := time.Duration(float64(time.Second) / rate)
	go func() {
		defer close(l.done)
		var wg sync.WaitGroup
		defer wg.Wait()
		for i := 0; ; i++ {
			due := l.start.Add(time.Duration(i) * interval)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(due)):
			}
			l.sent.Add(1)
			wg.Go(func() {
				// Not ctx: stopping the load lets the reads in flight finish.
				reqCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				err := get(reqCtx)
				lat := time.Since(due)
				l.mu.Lock()
				defer l.mu.Unlock()
				if err != nil {
					l.failed.Add(1)
					if len(l.first) < 5 {
						l.first = append(l.first, fmt.Sprintf("%s: %v", time.Since(l.start).Round(time.Millisecond), err))
					}
					return
				}
				_ = l.hist.RecordValue(lat.Microseconds())
			})
		}
	}()
	return l
}

func (l *steadyLoad) stop() steadyResult {
	l.cancel()
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return steadyResult{
		rate:   float64(l.sent.Load()) / time.Since(l.start).Seconds(),
		sent:   l.sent.Load(),
		failed: l.failed.Load(),
		p50:    time.Duration(l.hist.ValueAtQuantile(50)) * time.Microsecond,
		p99:    time.Duration(l.hist.ValueAtQuantile(99)) * time.Microsecond,
		maxL:   time.Duration(l.hist.Max()) * time.Microsecond,
		first:  slices.Clone(l.first),
	}
}

func printKills(records []killRecord, cfg killConfig, elapsed time.Duration, reads *steadyResult) {
	fmt.Printf("\n## Replacing a killed catalog instance\n\n")
	fmt.Printf("`mercato up --replicas catalog=%d` (SQLite). %d times, SIGKILL to one catalog process, the instances in turn, "+
		"each once it has run at least %s (the launcher's healthy run is %s, so every restart starts from the shortest backoff; "+
		"an instance's exits are at least %s apart, so none reaches 5 within a minute) and at least %s after the previous replacement was ready; %s in all. "+
		"Each time, waited for the new process to answer 200 on the same admin address's /readyz "+
		"(new pid from the launcher's log, later process_start_time_seconds).\n\n",
		cfg.replicas, len(records), cfg.after, launcherHealthyRun, cfg.after, cfg.gap, elapsed.Round(time.Second))
	fmt.Printf("Times from the kill. The last column, when reads go through the gateway meanwhile, is the first GetProduct call the new process handled " +
		"(its grpc_server_handled_total, polled every 5 ms): when the gateway routes to it again.\n\n")
	fmt.Printf("| # | instance | pid → new pid | backoff | old process gone | new process started | **ready (/readyz 200)** | first call through the gateway |\n|---|---|---|---|---|---|---|---|\n")
	var gone, started, ready, startup, firstCall []float64
	missed := 0
	for i, r := range records {
		call := "–"
		if r.firstCall > 0 {
			call = ms(r.firstCall)
			firstCall = append(firstCall, r.firstCall.Seconds())
		} else if reads != nil {
			missed++
			call = "none within " + firstCallTimeout.String()
		}
		fmt.Printf("| %d | %s | %d → %d | %s | %s | %s | %s | %s |\n", i+1, r.instance, r.oldPID, r.newPID, r.restartIn,
			ms(r.gone), ms(r.started), ms(r.ready), call)
		gone = append(gone, r.gone.Seconds())
		started = append(started, r.started.Seconds())
		ready = append(ready, r.ready.Seconds())
		startup = append(startup, (r.ready - r.started).Seconds())
	}
	if len(records) == 0 {
		return
	}
	fmt.Printf("\n| from the kill to | p50 | max | min |\n|---|---|---|---|\n")
	row := func(what string, xs []float64, bold bool) {
		p50, hi, lo := secs(median(xs)), secs(slices.Max(xs)), secs(slices.Min(xs))
		if bold {
			fmt.Printf("| %s | **%s** | **%s** | %s |\n", what, ms(p50), ms(hi), ms(lo))
			return
		}
		fmt.Printf("| %s | %s | %s | %s |\n", what, ms(p50), ms(hi), ms(lo))
	}
	row("the old process gone", gone, false)
	row("the new process started (the launcher's log)", started, false)
	row("the new process ready: replaced and serving", ready, true)
	row("(start-up alone: started → ready)", startup, false)
	if len(firstCall) > 0 {
		row("the new process's first call through the gateway", firstCall, false)
	}
	if missed > 0 {
		fmt.Printf("\n%d new processes got no call within %s.\n", missed, firstCallTimeout)
	}
	if reads != nil {
		fmt.Printf("\nMeanwhile %.0f product reads per second through the gateway (open loop): %d sent, **%d failed**, p50 %s, p99 %s, max %s.\n",
			reads.rate, reads.sent, reads.failed, ms(reads.p50), ms(reads.p99), ms(reads.maxL))
		for _, f := range reads.first {
			fmt.Printf("- failed at %s\n", f)
		}
	}
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

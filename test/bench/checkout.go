package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// The checkout benchmark: shoppers in a closed loop, each placing an order
// through the gateway (POST /api/v1/orders with explicit items, tok_visa
// and an Idempotency-Key unique to the order), then polling
// GET /api/v1/orders/{id} until the saga has finished with it. Polling is
// the only way a client observes completion, so the polls are part of the
// load the system carries.

type checkoutConfig struct {
	shoppers, users, products int
	warmup, duration, poll    time.Duration
	// wait > 0: shoppers ask the server to hold the answer until the order
	// has its outcome (GET …?wait_seconds=) instead of polling every poll.
	wait time.Duration
}

const (
	// stockPerProduct is what each ordered product is stocked with: far
	// more than a run sells, so no order is rejected for stock.
	stockPerProduct = 1_000_000
	// orderLimit is how long one shopper waits for its order to finish
	// before counting it as still pending.
	orderLimit = 60 * time.Second
	// setupWorkers registers and logs in users at once; identity hashes a
	// few passwords at a time anyway.
	setupWorkers    = 4
	shopperPassword = "bench shopper password"
)

type latencies struct {
	p50, p99, max time.Duration
	count         int64
}

func latenciesOf(h *hdrhistogram.Histogram) latencies {
	return latencies{
		p50:   time.Duration(h.ValueAtQuantile(50)) * time.Microsecond,
		p99:   time.Duration(h.ValueAtQuantile(99)) * time.Microsecond,
		max:   time.Duration(h.Max()) * time.Microsecond,
		count: h.TotalCount(),
	}
}

type checkoutResult struct {
	engine   string
	cfg      checkoutConfig
	ready    time.Duration
	settings *pgSettings

	// In the measured window: checkouts observed confirmed, their time
	// from POST to observed confirmation, the POST's own latency, polls.
	confirmed int64
	rate      float64
	toConfirm latencies
	accept    latencies
	pollRate  float64

	// Over the whole run (warm-up and the finishing of in-flight orders
	// included).
	placed, confirmedTotal int64
	outcomes               map[string]int64
	unitsConfirmed         int64
	unitsSold              int64
	reservedAtEnd          int64

	cpuGroups []cpuGroup
	cpu       cpuReport
	// PostgreSQL only: commits per service database in the window, and
	// the connections the services held at its end.
	commits     map[string]int64
	connections int
}

func checkoutPart(ctx context.Context, binary, pgURL string, cfg checkoutConfig) (res checkoutResult, err error) {
	res = checkoutResult{engine: "SQLite", cfg: cfg, outcomes: map[string]int64{}}
	if pgURL != "" {
		res.engine = "PostgreSQL"
	}
	fmt.Fprintf(os.Stderr, "bench: starting mercato up (%s) for the checkout part\n", res.engine)
	sys, err := startSystem(ctx, binary, pgURL)
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, sys.stop()) }()
	res.ready = sys.ready
	if pgURL != "" {
		ordersDB, err := withDatabase(pgURL, sys.dbPrefix+"orders")
		if err != nil {
			return res, err
		}
		s, err := readPGSettings(ctx, ordersDB)
		if err != nil {
			return res, err
		}
		res.settings = &s
	}

	client := newAPI(sys.base, cfg.shoppers+setupWorkers)
	fmt.Fprintf(os.Stderr, "bench: checkout setup: stock, %d users\n", cfg.users)
	adminToken, err := client.login(ctx, adminEmail, adminPassword)
	if err != nil {
		return res, err
	}
	products, err := client.products(ctx, cfg.products)
	if err != nil {
		return res, err
	}
	if len(products) == 0 {
		return res, errors.New("the catalog is empty")
	}
	for _, p := range products {
		if err := client.setStock(ctx, adminToken, p.SKU, stockPerProduct); err != nil {
			return res, err
		}
	}
	tokens, err := registerUsers(ctx, client, cfg.users)
	if err != nil {
		return res, err
	}

	children, err := childProcesses(sys.cmd.Process.Pid)
	if err != nil {
		return res, err
	}
	res.cpuGroups = serviceCPUGroups(sys.cmd.Process.Pid, children, pgURL != "")

	fmt.Fprintf(os.Stderr, "bench: checkout load on %s: %d shoppers, %s warm-up, %s measured\n", res.engine, cfg.shoppers, cfg.warmup, cfg.duration)
	if err := runCheckouts(ctx, client, sys, products, tokens, cfg, &res); err != nil {
		return res, err
	}

	for _, p := range products {
		s, err := client.stock(ctx, adminToken, p.SKU)
		if err != nil {
			return res, err
		}
		res.unitsSold += s.Sold
		res.reservedAtEnd += s.Reserved
	}
	printCheckout(res)
	if len(res.outcomes) > 0 {
		fmt.Fprintf(os.Stderr, "bench: not every checkout was confirmed; end of the system's log:\n%s\n", sys.tail(4000))
	}
	return res, nil
}

// registerUsers registers n customers and logs each in, returning their
// access tokens (valid far longer than a run).
func registerUsers(ctx context.Context, client api, n int) ([]string, error) {
	suffix := strings.ToLower(rand.Text()[:8])
	tokens := make([]string, n)
	errs := make([]error, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(setupWorkers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				email := fmt.Sprintf("shopper-%03d-%s@example.com", i, suffix)
				if errs[i] = client.register(ctx, email, shopperPassword, fmt.Sprintf("Shopper %d", i)); errs[i] != nil {
					continue
				}
				tokens[i], errs[i] = client.login(ctx, email, shopperPassword)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return tokens, ctx.Err()
}

// serviceCPUGroups are the processes whose CPU time a run reports: each
// service, the launcher (which embeds NATS), this program, and PostgreSQL
// when the services use it.
// loadGeneratorGroup is this program, and wrk when it drives the load.
const loadGeneratorGroup = "load generator (this program, and wrk)"

func serviceCPUGroups(launcher int, children map[string]process, withPostgres bool) []cpuGroup {
	names := make([]string, 0, len(children))
	for name := range children {
		names = append(names, name)
	}
	sort.Strings(names)
	groups := make([]cpuGroup, 0, len(names)+3)
	for _, name := range names {
		pid := children[name].pid
		groups = append(groups, cpuGroup{name: name, pids: func() []int { return []int{pid} }})
	}
	groups = append(groups,
		cpuGroup{name: "mercato up (launcher, embedded NATS)", pids: func() []int { return []int{launcher} }},
		cpuGroup{name: loadGeneratorGroup, pids: func() []int { return []int{os.Getpid()} }})
	if withPostgres {
		groups = append(groups, cpuGroup{name: "PostgreSQL (all its processes)", pids: func() []int { return pidsNamed("postgres") }})
	}
	return groups
}

// checkoutTally is one shopper's record, merged at the end.
type checkoutTally struct {
	toConfirm, accept      *hdrhistogram.Histogram
	confirmed              int64 // in the window
	placed, confirmedTotal int64
	unitsConfirmed         int64
	outcomes               map[string]int64
}

func runCheckouts(ctx context.Context, client api, sys *system, products []productRef, tokens []string, cfg checkoutConfig, res *checkoutResult) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	from := start.Add(cfg.warmup)
	to := from.Add(cfg.duration)
	inWindow := func(t time.Time) bool { return !t.Before(from) && t.Before(to) }
	var polls atomic.Int64

	// Snapshots at the window's edges, taken beside the load.
	type edge struct {
		cpu     cpuSnapshot
		commits map[string]int64
		conns   int
		err     error
	}
	edges := make(chan [2]edge, 1)
	go func() {
		var e [2]edge
		for i, at := range []time.Time{from, to} {
			select {
			case <-time.After(time.Until(at)):
			case <-ctx.Done():
				edges <- e
				return
			}
			e[i].cpu = takeCPUSnapshot(res.cpuGroups)
			if sys.pgURL != "" {
				e[i].commits, e[i].err = commitsByDatabase(ctx, sys.pgURL, sys.dbPrefix)
				if i == 1 && e[i].err == nil {
					e[i].conns, e[i].err = connectionsTo(ctx, sys.pgURL, sys.dbPrefix)
				}
			}
		}
		edges <- e
	}()

	tallies := make([]checkoutTally, cfg.shoppers)
	var wg sync.WaitGroup
	for i := range cfg.shoppers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := &tallies[i]
			t.toConfirm, t.accept, t.outcomes = newHistogram(), newHistogram(), map[string]int64{}
			rng := mrand.New(mrand.NewPCG(uint64(i), uint64(start.UnixNano())))
			for ctx.Err() == nil && time.Now().Before(to) {
				checkout(ctx, client, cfg.poll, cfg.wait, products, tokens[rng.IntN(len(tokens))], rng, t, inWindow, &polls)
			}
		}()
	}
	wg.Wait()
	var e [2]edge
	select {
	case e = <-edges:
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := errors.Join(e[0].err, e[1].err); err != nil {
		return err
	}

	confirm, accept := newHistogram(), newHistogram()
	for _, t := range tallies {
		confirm.Merge(t.toConfirm)
		accept.Merge(t.accept)
		res.confirmed += t.confirmed
		res.placed += t.placed
		res.confirmedTotal += t.confirmedTotal
		res.unitsConfirmed += t.unitsConfirmed
		for k, v := range t.outcomes {
			res.outcomes[k] += v
		}
	}
	res.rate = float64(res.confirmed) / cfg.duration.Seconds()
	res.toConfirm = latenciesOf(confirm)
	res.accept = latenciesOf(accept)
	res.pollRate = float64(polls.Load()) / cfg.duration.Seconds()
	res.cpu = cpuBetween(res.cpuGroups, e[0].cpu, e[1].cpu)
	if e[0].commits != nil {
		res.commits = map[string]int64{}
		for db, n := range e[1].commits {
			res.commits[db] = n - e[0].commits[db]
		}
		res.connections = e[1].conns
	}
	return ctx.Err()
}

var shippingAddress = address{Name: "Bench Shopper", Line1: "1 Load Street", City: "Testville", PostalCode: "12345", Country: "US"}

// checkout places one order of one or two products and follows it until it
// is confirmed, rejected or cancelled (waiting on the server when wait > 0,
// polling every poll otherwise), recording the outcome in t.
func checkout(ctx context.Context, client api, poll, wait time.Duration, products []productRef, token string, rng *mrand.Rand,
	t *checkoutTally, inWindow func(time.Time) bool, polls *atomic.Int64) {
	body := placeOrderBody{ShippingAddress: shippingAddress, PaymentToken: "tok_visa"}
	var units int64
	for _, j := range rng.Perm(len(products))[:1+rng.IntN(min(2, len(products)))] {
		q := int32(1 + rng.IntN(2))
		body.Items = append(body.Items, orderItem{ProductID: products[j].ID, Quantity: q})
		units += int64(q)
	}

	began := time.Now()
	o, err := client.placeOrder(ctx, token, rand.Text(), body)
	if ctx.Err() != nil {
		return
	}
	t.placed++
	if err != nil {
		t.outcomes[describe("POST /api/v1/orders", err)]++
		return
	}
	if inWindow(began) {
		_ = t.accept.RecordValue(time.Since(began).Microseconds())
	}

	deadline := began.Add(orderLimit)
	interval := poll
	if wait > 0 {
		interval = 0 // the server does the waiting
	}
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for !o.terminal() {
		if time.Now().After(deadline) {
			t.outcomes[fmt.Sprintf("still pending after %s", orderLimit)]++
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		timer.Reset(interval)
		if inWindow(time.Now()) {
			polls.Add(1)
		}
		got, err := client.getOrder(ctx, token, o.ID, wait)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			t.outcomes[describe("GET /api/v1/orders/{id}", err)]++ // counted, and polled again
			continue
		}
		o = got
	}
	done := time.Now()
	if o.Status != "confirmed" {
		t.outcomes[fmt.Sprintf("order %s: %s", o.Status, o.Reason)]++
		return
	}
	t.confirmedTotal++
	t.unitsConfirmed += units
	if inWindow(done) {
		t.confirmed++
		_ = t.toConfirm.RecordValue(done.Sub(began).Microseconds())
	}
}

// describe names a failed request for the outcome table.
func describe(what string, err error) string {
	msg := err.Error()
	if statusOf(err) == 0 {
		msg = "no answer: " + msg
	}
	if len(msg) > 120 {
		msg = msg[:120] + "…"
	}
	return what + ": " + msg
}

func printCheckout(r checkoutResult) {
	c := r.cfg
	fmt.Printf("\n## Checkout on %s\n\n", r.engine)
	fmt.Printf("Fresh system (`mercato up` ready in %s). %d shoppers in a closed loop, as %d users: each places an order of 1–2 of %d stocked products "+
		"(quantity 1–2, `tok_visa`, a unique `Idempotency-Key`) with `POST /api/v1/orders`, then follows it with `GET /api/v1/orders/{id}` (%s) "+
		"until the order is terminal; time to confirmed runs from sending the POST to the answer that shows `confirmed`. %s warm-up, %s measured.\n",
		r.ready.Round(time.Millisecond), c.shoppers, c.users, c.products, c.following(), c.warmup, c.duration)
	if r.settings != nil {
		fmt.Printf("PostgreSQL %s, `SHOW synchronous_commit` on the orders database: **%s** (fsync=%s).\n",
			r.settings.version, r.settings.synchronousCommit, r.settings.fsync)
	}
	fmt.Printf("\n| engine | confirmed checkouts/s | p50 to confirmed | p99 to confirmed | max | POST→202 p50 | POST→202 p99 | polls/s |\n|---|---|---|---|---|---|---|---|\n")
	fmt.Printf("| %s | **%.1f** | %s | **%s** | %s | %s | %s | %.0f |\n",
		r.engine, r.rate, ms(r.toConfirm.p50), ms(r.toConfirm.p99), ms(r.toConfirm.max), ms(r.accept.p50), ms(r.accept.p99), r.pollRate)

	fmt.Printf("\nWhole run (warm-up and the finishing of orders in flight included): %d orders placed, %d confirmed", r.placed, r.confirmedTotal)
	if len(r.outcomes) == 0 {
		fmt.Printf(", no other outcome and no error.\n")
	} else {
		fmt.Printf("; other outcomes and errors:\n\n| outcome | count |\n|---|---|\n")
		keys := make([]string, 0, len(r.outcomes))
		for k := range r.outcomes {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Printf("| %s | %d |\n", strings.ReplaceAll(k, "|", "\\|"), r.outcomes[k])
		}
	}
	match := "match"
	if r.unitsSold != r.unitsConfirmed {
		match = "DO NOT match"
	}
	fmt.Printf("\nStock check: inventory reports %d units sold and %d still reserved; the confirmed orders hold %d units (%s).\n",
		r.unitsSold, r.reservedAtEnd, r.unitsConfirmed, match)

	fmt.Printf("\nCPU time in the measured window (%s, %d CPUs = %.1f CPU-s available):\n\n",
		r.cpu.elapsed.Round(time.Millisecond), numCPU(r.cpu), r.cpu.capacity)
	fmt.Printf("| process | CPU-s | share of the machine | CPU-ms per confirmed checkout |\n|---|---|---|---|\n")
	for _, g := range r.cpu.groups {
		fmt.Printf("| %s | %.1f | %.0f%% | %s |\n", g.name, g.seconds, pct(g.seconds, r.cpu.capacity), perCheckout(g.seconds*1000, r.confirmed))
	}
	other := r.cpu.other()
	fmt.Printf("| everything else on the machine (kernel threads, other users) | %.1f | %.0f%% | |\n", other, pct(other, r.cpu.capacity))
	fmt.Printf("| idle | %.1f | %.0f%% | |\n", r.cpu.capacity-r.cpu.busy, pct(r.cpu.capacity-r.cpu.busy, r.cpu.capacity))

	if r.commits != nil {
		fmt.Printf("\nPostgreSQL commits in the window by service database (read-only statements outside a transaction count as one; "+
			"the services held %d connections at the end):\n\n| database | commits/s | per confirmed checkout |\n|---|---|---|\n", r.connections)
		names := make([]string, 0, len(r.commits))
		var total int64
		for n, v := range r.commits {
			names = append(names, n)
			total += v
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Printf("| %s | %.0f | %s |\n", n, float64(r.commits[n])/r.cfg.duration.Seconds(), perCheckout(float64(r.commits[n]), r.confirmed))
		}
		fmt.Printf("| **all** | **%.0f** | **%s** |\n", float64(total)/r.cfg.duration.Seconds(), perCheckout(float64(total), r.confirmed))
	}
	fmt.Printf("\nThe reads are load too: every GET goes through the gateway to orders' read model (%s).\n", r.cfg.following())
}

// totalCommits is the commits of every service database in the window.
func (r checkoutResult) totalCommits() int64 {
	var total int64
	for _, v := range r.commits {
		total += v
	}
	return total
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

func pct(part, whole float64) float64 {
	if whole == 0 {
		return 0
	}
	return 100 * part / whole
}

func perCheckout(v float64, confirmed int64) string {
	if confirmed == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f", v/float64(confirmed))
}

func numCPU(r cpuReport) int {
	if r.elapsed <= 0 {
		return 0
	}
	return int(r.capacity/r.elapsed.Seconds() + 0.5)
}

// following says how shoppers follow their orders.
func (c checkoutConfig) following() string {
	if c.wait > 0 {
		return fmt.Sprintf("`?wait_seconds=%d`: the server answers when the order has its outcome", int(c.wait/time.Second))
	}
	return fmt.Sprintf("polled every %s", c.poll)
}

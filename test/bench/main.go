// Command bench measures a running mercato end to end and prints the
// figures as Markdown. It has three parts, each on a fresh system started
// from the real binary (`mercato up`):
//
//   - read: time to ready, idle memory per process, and the gateway's
//     GET /api/v1/products/{id} against catalog's gRPC GetProduct called
//     directly (maximum throughput, then p50/p99 at half that rate);
//   - checkout: concurrent shoppers placing orders through the public API
//     and polling each until the saga confirms it, on SQLite and on
//     PostgreSQL (checkout.go);
//   - pgbench: PostgreSQL's own TPC-B-like benchmark on the same server, as
//     the yardstick for the PostgreSQL checkout figure.
//
// Two more parts run only when asked for (-scale, -kills):
//
//   - scale: the gateway's product reads on a system with one catalog and
//     on one with several, side by side, with each catalog instance's
//     share of the calls (scale.go);
//   - kills: SIGKILL one catalog instance after another and time how long
//     `mercato up` takes to have a new process serving (kill.go).
//
// The read part drives each path with a load tool that is cheap for its
// protocol, since every CPU cycle the tool spends is taken from the servers
// on this shared machine: grpc-go over one pooled connection for catalog,
// wrk over keep-alive connections for the gateway (Go's HTTP client, which
// costs about three times wrk's CPU per request, when wrk is not
// installed). Both are swept over the same concurrencies, taking turns
// round after round, and each path's best median is its maximum. The
// latencies at half that rate come from one open-loop Go client per path,
// recorded in an HDR histogram (load.go).
//
// Nothing is asserted: the figures are printed beside their targets.
//
//	make bench                         (builds bin/mercato, runs every part)
//	go run ./test/bench -checkout -engines postgres
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type options struct {
	binary      string
	postgresURL string

	read, checkout, pgbench bool
	engines                 []string

	// opt-in parts
	scale         bool
	scaleReplicas int
	killCfg       killConfig

	// read part
	duration    time.Duration
	concurrency []int
	idle        time.Duration
	wrk         string
	rounds      int
	bare        bool

	// checkout part
	checkoutCfg checkoutConfig

	// pgbench part
	pgbenchCfg pgbenchConfig
}

func main() {
	if spec := os.Getenv(bareEnv); spec != "" {
		if err := serveBare(spec); err != nil {
			fmt.Fprintln(os.Stderr, "bench: bare gateway:", err)
			os.Exit(1)
		}
		return
	}
	var o options
	var engines string
	flag.StringVar(&o.binary, "binary", "bin/mercato", "path to the built mercato binary")
	flag.StringVar(&o.postgresURL, "postgres", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
		"PostgreSQL server for the checkout run on PostgreSQL and for pgbench (scratch databases are created and dropped)")
	flag.BoolVar(&o.read, "read", false, "run the start-up, memory and product read part (with no part flag, every part runs)")
	flag.BoolVar(&o.checkout, "checkout", false, "run the checkout part")
	flag.BoolVar(&o.pgbench, "pgbench", false, "run pgbench")
	flag.StringVar(&engines, "engines", "sqlite,postgres", "comma-separated engines of the checkout part")
	flag.BoolVar(&o.scale, "scale", false, "run the scale part: the gateway's product reads with 1 catalog and with -scale-replicas, side by side (only when asked for)")
	flag.IntVar(&o.scaleReplicas, "scale-replicas", 3, "catalog instances of the scale part's second system")
	flag.IntVar(&o.killCfg.kills, "kills", 0, "run the kill part: SIGKILL a catalog instance this many times, one after another, timing each replacement (0: not run)")
	flag.IntVar(&o.killCfg.replicas, "kill-replicas", 3, "catalog instances of the kill part, killed in turn")
	flag.DurationVar(&o.killCfg.after, "kill-after", 31*time.Second, "how long an instance has run before the kill part kills it (at least 15s, so that no instance exits 5 times within a minute; above 30s every restart gets the shortest backoff)")
	flag.DurationVar(&o.killCfg.gap, "kill-gap", 11*time.Second, "how long after one replacement is ready the kill part kills the next instance")
	flag.Float64Var(&o.killCfg.rate, "kill-load", 100, "product reads per second through the gateway during the kill part (open loop; 0 for none)")

	flag.DurationVar(&o.duration, "duration", 5*time.Second, "length of each product read run")
	concurrency := flag.String("concurrency", "32,64,128", "comma-separated concurrent clients of the maximum-throughput read runs; each path's best is its maximum")
	flag.DurationVar(&o.idle, "idle", 3*time.Second, "how long the system idles before memory is read")

	flag.IntVar(&o.checkoutCfg.shoppers, "shoppers", 32, "concurrent shoppers in the checkout run (closed loop)")
	flag.IntVar(&o.checkoutCfg.users, "users", 50, "registered users the shoppers place orders as")
	flag.IntVar(&o.checkoutCfg.products, "products", 8, "products stocked and ordered (1 or 2 of them per order)")
	flag.DurationVar(&o.checkoutCfg.warmup, "warmup", 5*time.Second, "checkout load before the measured window")
	flag.DurationVar(&o.checkoutCfg.duration, "checkout-duration", 20*time.Second, "measured checkout window")
	flag.DurationVar(&o.checkoutCfg.poll, "poll", 15*time.Millisecond, "how often a shopper polls its order when -wait is 0")
	flag.DurationVar(&o.checkoutCfg.wait, "wait", 5*time.Second, "how long the server may hold a shopper's GET /api/v1/orders/{id} until the outcome (wait_seconds); 0 polls instead")

	flag.StringVar(&o.pgbenchCfg.binary, "pgbench-binary", "/usr/bin/pgbench", "pgbench executable")
	flag.IntVar(&o.pgbenchCfg.scale, "pgbench-scale", 10, "pgbench -s when initialising")
	flag.IntVar(&o.pgbenchCfg.clients, "pgbench-clients", 8, "pgbench -c")
	flag.IntVar(&o.pgbenchCfg.threads, "pgbench-threads", 2, "pgbench -j")
	flag.DurationVar(&o.pgbenchCfg.duration, "pgbench-duration", 20*time.Second, "pgbench -T")
	flag.BoolVar(&o.bare, "bare", false, "also measure bare grpc-gateway (no middleware) in front of catalog, as a reference for the gateway's own cost")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds of the two maximum-rate runs, taking turns; the medians are reported")
	flag.StringVar(&o.wrk, "wrk", "wrk", "wrk executable for the gateway's maximum rate (Debian package wrk); when not found, Go's HTTP client is used")
	logLevel := flag.String("log-level", "info", "LOG_LEVEL of the system under test (info keeps the gateway's access log on)")
	flag.Parse()
	benchEnv = append(benchEnv, "LOG_LEVEL="+*logLevel)

	if !o.read && !o.checkout && !o.pgbench && !o.scale && o.killCfg.kills == 0 {
		o.read, o.checkout, o.pgbench = true, true, true
	}
	for _, e := range strings.Split(engines, ",") {
		if e = strings.TrimSpace(e); e != "" {
			o.engines = append(o.engines, e)
		}
	}
	for _, c := range strings.Split(*concurrency, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "bench: -concurrency: %q is not a positive number\n", c)
			os.Exit(2)
		}
		o.concurrency = append(o.concurrency, n)
	}
	o.pgbenchCfg.serverURL = o.postgresURL

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// summary collects the figures compared with their targets at the end.
type summary struct {
	read      *readResult
	checkouts []checkoutResult
	pgbench   *pgbenchResult
}

func run(ctx context.Context, o options) error {
	for _, e := range o.engines {
		if e != "sqlite" && e != "postgres" {
			return fmt.Errorf("unknown engine %q (sqlite or postgres)", e)
		}
	}
	c := o.checkoutCfg
	if c.shoppers < 1 || c.users < 1 || c.products < 1 || c.duration <= 0 || c.warmup < 0 || c.poll <= 0 ||
		len(o.concurrency) == 0 || o.rounds < 1 || o.duration <= 0 || o.pgbenchCfg.duration < time.Second {
		return errors.New("counts must be at least 1, durations positive (pgbench's at least 1s)")
	}
	k := o.killCfg
	if o.scaleReplicas < 2 || o.scaleReplicas > 16 || k.kills < 0 || k.replicas < 1 || k.replicas > 16 || k.rate < 0 || k.gap < 0 {
		return errors.New("-scale-replicas must be 2 to 16, -kill-replicas 1 to 16, -kills, -kill-gap and -kill-load not negative")
	}
	if k.after < minKillAfter {
		return fmt.Errorf("-kill-after must be at least %s: an instance that exits 5 times within a minute is given up on", minKillAfter)
	}
	binary, err := filepath.Abs(o.binary)
	if err != nil {
		return err
	}
	usesPostgres := o.pgbench || (o.checkout && slices.Contains(o.engines, "postgres"))

	fmt.Printf("# mercato benchmark\n\n")
	fmt.Printf("- date: %s\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Printf("- machine: %d CPUs (%s), %s, %s/%s\n", runtime.NumCPU(), cpuModel(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if usesPostgres {
		s, err := readPGSettings(ctx, o.postgresURL)
		if err != nil {
			return err
		}
		fmt.Printf("- PostgreSQL %s at %s (synchronous_commit=%s, fsync=%s, shared_buffers=%s, max_connections=%s)\n",
			s.version, redact(o.postgresURL), s.synchronousCommit, s.fsync, s.sharedBuffers, s.maxConnections)
	}
	fmt.Printf("- load average at start: %s\n", loadAverage())

	var sum summary
	if o.read {
		r, err := readPart(ctx, binary, o)
		if err != nil {
			return fmt.Errorf("read part: %w", err)
		}
		sum.read = &r
	}
	if o.checkout {
		for _, engine := range o.engines {
			pg := ""
			if engine == "postgres" {
				pg = o.postgresURL
			}
			r, err := checkoutPart(ctx, binary, pg, o.checkoutCfg)
			if err != nil {
				return fmt.Errorf("checkout on %s: %w", engine, err)
			}
			sum.checkouts = append(sum.checkouts, r)
		}
	}
	if o.pgbench {
		fmt.Fprintf(os.Stderr, "bench: running pgbench\n")
		r, err := runPgbench(ctx, o.pgbenchCfg)
		if err != nil {
			return fmt.Errorf("pgbench: %w", err)
		}
		printPgbench(r, o.pgbenchCfg)
		sum.pgbench = &r
	}
	if o.scale {
		if err := scalePart(ctx, binary, o); err != nil {
			return fmt.Errorf("scale part: %w", err)
		}
	}
	if o.killCfg.kills > 0 {
		if err := killPart(ctx, binary, o.killCfg); err != nil {
			return fmt.Errorf("kill part: %w", err)
		}
	}
	if o.read || o.checkout || o.pgbench {
		printSummary(sum)
	}
	fmt.Printf("\nload average at end: %s\n", loadAverage())
	return nil
}

// benchEnv is added to every system's environment: no rate limits (the
// load comes from one address and a few users) and a known administrator
// password. The log level comes from -log-level: at the default, info,
// every middleware is on, the gateway's access log included.
var benchEnv = []string{
	"MERCATO_RATE_LIMIT_RPS=0",
	"MERCATO_LOGIN_RATE_PER_MIN=0",
	"MERCATO_LOGIN_IP_RATE_PER_MIN=0",
	"MERCATO_ADMIN_PASSWORD=" + adminPassword,
}

const (
	adminEmail    = "admin@mercato.local"
	adminPassword = "bench-admin-password"
)

// system is one `mercato up` on a fresh data directory and, for
// PostgreSQL, fresh databases.
type system struct {
	cmd      *exec.Cmd
	base     string
	dataDir  string
	logs     *os.File      // the system's output, written by the launcher itself
	exited   chan struct{} // closed once mercato up has exited
	term     func() error  // sends SIGTERM, once
	ready    time.Duration
	pgURL    string // the server, when the services keep their data in PostgreSQL
	dbPrefix string
}

// startSystem starts `mercato up` and waits until the public API serves the
// seeded catalog.
func startSystem(ctx context.Context, binary, pgURL string) (*system, error) {
	return startSystemWith(ctx, binary, pgURL, "")
}

// startSystemWith is startSystem with `mercato up --replicas replicas`
// when replicas is not empty (service=count pairs, as the flag takes them).
func startSystemWith(ctx context.Context, binary, pgURL, replicas string) (*system, error) {
	dataDir, err := os.MkdirTemp("", "mercato-bench-")
	if err != nil {
		return nil, err
	}
	if replicas != "" {
		if pgURL != "" {
			_ = os.RemoveAll(dataDir)
			return nil, errors.New("replicas are only started on SQLite")
		}
		if err := migrateReplicated(ctx, binary, dataDir, replicas); err != nil {
			_ = os.RemoveAll(dataDir)
			return nil, err
		}
	}
	addr, err := freeAddr(ctx)
	if err != nil {
		return nil, err
	}
	// The system writes its log straight to a file: relaying thousands of
	// lines a second through this process would charge the load generator
	// for them.
	logs, err := os.CreateTemp("", "mercato-bench-*.log")
	if err != nil {
		return nil, err
	}
	s := &system{base: "http://" + addr, dataDir: dataDir, logs: logs, pgURL: pgURL}
	args := []string{"up", "--addr", addr, "--data", dataDir}
	if pgURL != "" {
		s.dbPrefix = uniqueName("bench_") + "_"
		args = append(args, "--postgres", pgURL, "--db-prefix", s.dbPrefix)
	}
	if replicas != "" {
		args = append(args, "--replicas", replicas)
	}
	// Cancelling ctx (Ctrl-C) stops the system gracefully, so that its
	// databases can still be dropped. In a process group of its own it
	// gets that one SIGTERM, not also the terminal's SIGINT: a second
	// signal would make it stop at once.
	s.cmd = exec.CommandContext(ctx, binary, args...)
	s.term = sync.OnceValue(func() error { return s.cmd.Process.Signal(syscall.SIGTERM) })
	s.cmd.Cancel = s.term
	s.cmd.WaitDelay = 30 * time.Second
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	s.cmd.Env = append(os.Environ(), benchEnv...)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	start := time.Now()
	if err := s.cmd.Start(); err != nil {
		_ = os.RemoveAll(dataDir)
		_ = logs.Close()
		_ = os.Remove(logs.Name())
		return nil, fmt.Errorf("start mercato up: %w", err)
	}
	s.exited = make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(s.exited) }()
	if err := waitReady(ctx, s.base, s.exited, 60*time.Second); err != nil {
		logs := s.tail(8000)
		_ = s.stop()
		return nil, fmt.Errorf("%w\n%s", err, logs)
	}
	s.ready = time.Since(start)
	return s, nil
}

// stop ends the system gracefully and removes everything it stored.
func (s *system) stop() error {
	select {
	case <-s.exited:
	default:
		_ = s.term()
		select {
		case <-s.exited:
		case <-time.After(30 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	}
	err := errors.Join(os.RemoveAll(s.dataDir), s.logs.Close(), os.Remove(s.logs.Name()))
	if s.pgURL != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err = errors.Join(err, dropDatabases(ctx, s.pgURL, s.dbPrefix))
	}
	return err
}

// tail is the end of the system's output, at most n bytes.
func (s *system) tail(n int64) string {
	info, err := s.logs.Stat()
	if err != nil {
		return err.Error()
	}
	off := max(0, info.Size()-n)
	buf := make([]byte, info.Size()-off)
	k, _ := s.logs.ReadAt(buf, off)
	out := string(buf[:k])
	if off > 0 {
		out = "…" + out
	}
	return out
}

type readResult struct {
	ready     time.Duration
	idle      time.Duration
	memory    map[string]memory // per service
	grpcMax   loadResult
	grpcCPU   cpuReport
	httpCPU   cpuReport
	httpMax   loadResult
	grpcHalf  loadResult
	httpHalf  loadResult
	duration  time.Duration
	gatewayOf float64 // gateway max / direct max
	// every round's maximum rate, and the requests made in all of them
	grpcRates, httpRates     map[int][]float64 // by concurrency
	grpcClients, httpClients int               // the concurrency of each maximum
	grpcN, httpN             float64
	bareRates                map[int][]float64 // the bare grpc-gateway reference, when measured
	loadTool                 string            // what drove the gateway's maximum-rate run
}

func readPart(ctx context.Context, binary string, o options) (r readResult, err error) {
	fmt.Fprintf(os.Stderr, "bench: starting mercato up (SQLite) for the read part\n")
	sys, err := startSystem(ctx, binary, "")
	if err != nil {
		return readResult{}, err
	}
	defer func() { err = errors.Join(err, sys.stop()) }()
	r = readResult{ready: sys.ready, idle: o.idle, memory: map[string]memory{}, duration: o.duration}

	time.Sleep(o.idle) // let the processes settle before reading their memory
	children, err := childProcesses(sys.cmd.Process.Pid)
	if err != nil {
		return r, err
	}
	for name, p := range children {
		r.memory[name] = p.memory
	}
	launcherMem := memoryOf(sys.cmd.Process.Pid)
	productID, err := firstProductID(ctx, sys.base)
	if err != nil {
		return r, err
	}
	catalogAddr := children["catalog"].env["MERCATO_GRPC_ADDR"]
	if catalogAddr == "" {
		return r, errors.New("could not find catalog's gRPC address")
	}

	fmt.Printf("\n## Start-up and memory\n\n")
	fmt.Printf("- `mercato up` ready (all processes ready, demo data seeded), SQLite: **%s**\n", r.ready.Round(time.Millisecond))
	fmt.Printf("- idle memory per process after %s. RSS counts the pages of the one mercato binary (%.0f MB) that a process has touched; "+
		"those are shared by every process, so private memory (anonymous pages: heap, stacks) and PSS (shared pages divided among their users) "+
		"say what each process really adds:\n\n| process | RSS | private | PSS |\n|---|---|---|---|\n", o.idle, binarySize(binary))
	names := make([]string, 0, len(children))
	for name := range children {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		m := children[name].memory
		fmt.Printf("| %s | %s | %s | %s |\n", name, mib(m.rssKiB), mib(m.anonKiB), mib(m.pssKiB))
	}
	fmt.Printf("| mercato up (launcher, embedded NATS) | %s | %s | %s |\n", mib(launcherMem.rssKiB), mib(launcherMem.anonKiB), mib(launcherMem.pssKiB))

	fmt.Fprintf(os.Stderr, "bench: product reads, %s per run\n", o.duration)
	grpcGet, closeGRPC, err := grpcGetProduct(catalogAddr, productID)
	if err != nil {
		return r, err
	}
	defer closeGRPC()
	httpGet := httpGetProduct(sys.base+"/api/v1/products/"+productID, slices.Max(o.concurrency))

	r.loadTool = "Go's net/http client"
	wrkPath, err := exec.LookPath(o.wrk)
	if err == nil {
		r.loadTool = "wrk"
	} else {
		fmt.Fprintf(os.Stderr, "bench: %s not found (apt-get install wrk); measuring the gateway's maximum with Go's HTTP client, which costs more CPU per request\n", o.wrk)
	}
	groups := serviceCPUGroups(sys.cmd.Process.Pid, children, false)
	// The two paths take turns, at every concurrency of every round, so
	// that a slow spell of the shared machine falls on both rather than on
	// one. For each path, the maximum is its best concurrency's median.
	grpcRates := map[int][]float64{}
	httpRates := map[int][]float64{}
	r.bareRates = map[int][]float64{}
	var bareURL string
	if o.bare {
		base, stopBare, err := startBare(ctx, catalogAddr, productID)
		if err != nil {
			return r, err
		}
		defer stopBare()
		bareURL = base + "/api/v1/products/" + productID
	}
	for round := range o.rounds {
		for _, clients := range o.concurrency {
			fmt.Fprintf(os.Stderr, "bench: round %d of %d, %d clients\n", round+1, o.rounds, clients)
			before := takeCPUSnapshot(groups)
			res := closedLoop(grpcGet, clients, o.duration)
			after := takeCPUSnapshot(groups)
			r.grpcCPU = r.grpcCPU.plus(cpuBetween(groups, before, after))
			r.grpcN += res.rps * after.at.Sub(before.at).Seconds()
			r.grpcMax.errors += res.errors
			grpcRates[clients] = append(grpcRates[clients], res.rps)

			before = takeCPUSnapshot(groups)
			var wrkCPU time.Duration
			if r.loadTool == "wrk" {
				res, wrkCPU, err = wrkMax(ctx, wrkPath, sys.base+"/api/v1/products/"+productID, clients, o.duration)
				if err != nil {
					return r, err
				}
			} else {
				res = closedLoop(httpGet, clients, o.duration)
			}
			after = takeCPUSnapshot(groups)
			report := cpuBetween(groups, before, after)
			report.charge(loadGeneratorGroup, wrkCPU.Seconds())
			r.httpCPU = r.httpCPU.plus(report)
			r.httpN += res.rps * after.at.Sub(before.at).Seconds()
			r.httpMax.errors += res.errors
			httpRates[clients] = append(httpRates[clients], res.rps)

			if bareURL != "" {
				if r.loadTool == "wrk" {
					res, _, err = wrkMax(ctx, wrkPath, bareURL, clients, o.duration)
					if err != nil {
						return r, err
					}
				} else {
					res = closedLoop(httpGetProduct(bareURL, clients), clients, o.duration)
				}
				r.bareRates[clients] = append(r.bareRates[clients], res.rps)
			}
		}
	}
	r.grpcRates, r.httpRates = grpcRates, httpRates
	for _, clients := range o.concurrency {
		if m := median(grpcRates[clients]); m > r.grpcMax.rps {
			r.grpcMax.rps, r.grpcClients = m, clients
		}
		if m := median(httpRates[clients]); m > r.httpMax.rps {
			r.httpMax.rps, r.httpClients = m, clients
		}
	}
	r.grpcHalf = openLoop(grpcGet, r.grpcMax.rps/2, o.duration)
	r.httpHalf = openLoop(httpGet, r.httpMax.rps/2, o.duration)
	if r.grpcMax.rps > 0 {
		r.gatewayOf = r.httpMax.rps / r.grpcMax.rps
	}

	fmt.Printf("\n## GET one product: gateway vs direct gRPC\n\n")
	fmt.Printf("Maximum: closed loops of %s concurrent clients (gRPC: grpc-go over one connection; HTTP: %s over keep-alive connections), "+
		"%d rounds in which the two paths take turns at every concurrency, %s per run; each path's maximum is the median of its best concurrency. "+
		"Latency: open loop at half that rate (Go clients). Rate limit off, all other middleware on.\n\n", intList(o.concurrency), r.loadTool, o.rounds, o.duration)
	if o.bare {
		fmt.Printf("| clients | gRPC req/s, every round | median | gateway req/s, every round | median | bare grpc-gateway req/s, every round | median |\n|---|---|---|---|---|---|---|\n")
	} else {
		fmt.Printf("| clients | gRPC req/s, every round | median | gateway req/s, every round | median |\n|---|---|---|---|---|\n")
	}
	var bareMax float64
	for _, clients := range o.concurrency {
		fmt.Printf("| %d | %s | %.0f | %s | %.0f |", clients, rateList(grpcRates[clients]), median(grpcRates[clients]), rateList(httpRates[clients]), median(httpRates[clients]))
		if o.bare {
			m := median(r.bareRates[clients])
			bareMax = max(bareMax, m)
			fmt.Printf(" %s | %.0f |", rateList(r.bareRates[clients]), m)
		}
		fmt.Println()
	}
	fmt.Printf("\n| path | max req/s | at clients | errors | p50 at half rate | p99 at half rate |\n|---|---|---|---|---|---|\n")
	fmt.Printf("| catalog gRPC `GetProduct` | %.0f | %d | %d | %s | %s |\n", r.grpcMax.rps, r.grpcClients, r.grpcMax.errors, r.grpcHalf.p50, r.grpcHalf.p99)
	fmt.Printf("| gateway `GET /api/v1/products/{id}` | %.0f | %d | %d | %s | %s |\n", r.httpMax.rps, r.httpClients, r.httpMax.errors, r.httpHalf.p50, r.httpHalf.p99)
	fmt.Printf("\ngateway / direct = **%.0f%%**\n", 100*r.gatewayOf)
	if o.bare && r.grpcMax.rps > 0 {
		fmt.Printf("\nReference: bare grpc-gateway (its defaults in front of the same catalog: no middleware, logs, metrics, tracing, deadline or retries), "+
			"best median %.0f req/s = %.0f%% of direct; the gateway reaches %.0f%% of it.\n", bareMax, 100*bareMax/r.grpcMax.rps, 100*r.httpMax.rps/max(bareMax, 1))
	}

	fmt.Printf("\nCPU time during the maximum-throughput runs (every process shares the same %d CPUs), and per request:\n\n", runtime.NumCPU())
	fmt.Printf("| process | gRPC run: share of the machine | µs per request | gateway run: share of the machine | µs per request |\n|---|---|---|---|---|\n")
	grpcN, httpN := r.grpcN, r.httpN
	for i, g := range r.grpcCPU.groups {
		h := r.httpCPU.groups[i]
		if g.seconds < 0.05 && h.seconds < 0.05 {
			continue // a service neither path involves
		}
		fmt.Printf("| %s | %.0f%% | %.0f | %.0f%% | %.0f |\n", g.name,
			pct(g.seconds, r.grpcCPU.capacity), 1e6*g.seconds/grpcN, pct(h.seconds, r.httpCPU.capacity), 1e6*h.seconds/httpN)
	}
	fmt.Printf("| everything else on the machine | %.0f%% | | %.0f%% | |\n", pct(r.grpcCPU.other(), r.grpcCPU.capacity), pct(r.httpCPU.other(), r.httpCPU.capacity))
	fmt.Printf("| idle | %.0f%% | | %.0f%% | |\n", pct(r.grpcCPU.capacity-r.grpcCPU.busy, r.grpcCPU.capacity), pct(r.httpCPU.capacity-r.httpCPU.busy, r.httpCPU.capacity))
	return r, nil
}

func intList(ns []int) string {
	parts := make([]string, len(ns))
	for i, n := range ns {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ", ")
}

func rateList(rates []float64) string {
	parts := make([]string, len(rates))
	for i, r := range rates {
		parts[i] = fmt.Sprintf("%.0f", r)
	}
	return strings.Join(parts, ", ")
}

func freeAddr(ctx context.Context) (string, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// waitReady polls until the gateway serves the product list, which needs
// the gateway, identity's keys and catalog, and the demo data is seeded.
// The launcher starts the gateway only once every service is ready.
func waitReady(ctx context.Context, base string, exited <-chan struct{}, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	client := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("mercato up exited")
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/products?page_size=1", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			var body struct {
				Products []json.RawMessage `json:"products"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && len(body.Products) > 0 {
				return nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return errors.New("mercato up was not ready in time")
}

func firstProductID(ctx context.Context, base string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/products?page_size=1", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var body struct {
		Products []struct {
			ID string `json:"id"`
		} `json:"products"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return "", fmt.Errorf("list products: %w", err)
	}
	if len(body.Products) == 0 {
		return "", errors.New("no product to fetch")
	}
	return body.Products[0].ID, nil
}

type process struct {
	pid    int
	memory memory
	env    map[string]string
}

// childProcesses finds the launcher's children (mercato serve <name>) in /proc.
func childProcesses(parent int) (map[string]process, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	out := map[string]process{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) < 2 || fields[1] != strconv.Itoa(parent) {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		if len(args) < 3 || args[1] != "serve" {
			continue
		}
		m := memoryOf(pid)
		out[args[2]] = process{pid: pid, memory: m, env: environ(pid)}
	}
	if len(out) == 0 {
		return nil, errors.New("no service processes found")
	}
	return out, nil
}

// memory is a process's resident memory, in KiB.
type memory struct {
	rssKiB, anonKiB, pssKiB int
}

// memoryOf reads /proc/<pid>/smaps_rollup.
func memoryOf(pid int) memory {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return memory{}
	}
	defer f.Close()
	var m memory
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), ":")
		if !ok {
			continue
		}
		n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		switch k {
		case "Rss":
			m.rssKiB = n
		case "Anonymous":
			m.anonKiB = n
		case "Pss":
			m.pssKiB = n
		}
	}
	return m
}

func mib(kib int) string {
	return fmt.Sprintf("%.1f MiB", float64(kib)/1024)
}

// binarySize is the size of the file at path, in MB.
func binarySize(path string) float64 {
	info, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return float64(info.Size()) / 1e6
}

func environ(pid int) map[string]string {
	raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	env := map[string]string{}
	for _, kv := range strings.Split(string(raw), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return env
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown model"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown model"
}

// redact hides a password in a database URL before it is printed.
func redact(rawURL string) string {
	i := strings.Index(rawURL, "://")
	at := strings.LastIndex(rawURL, "@")
	if i < 0 || at < i {
		return rawURL
	}
	creds := rawURL[i+3 : at]
	if user, _, ok := strings.Cut(creds, ":"); ok {
		return rawURL[:i+3] + user + ":***" + rawURL[at:]
	}
	return rawURL
}

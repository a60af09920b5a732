// Package launcher is what `mercato up` does: it runs the whole system on
// one machine with nothing installed but the binary. It starts an embedded
// NATS JetStream server, then every service as its own OS process on
// loopback ports (real network boundaries, as in a cluster), streams their
// logs (readable lines on a terminal, prefixed JSON elsewhere), waits until
// all are ready, seeds a demo catalog, and on cancellation stops them
// gracefully, the gateway first.
package launcher

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mercato-dev/mercato/internal/platform/config"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/events"
	"github.com/mercato-dev/mercato/internal/platform/observability"
	"github.com/mercato-dev/mercato/internal/system"
)

// launcherName prefixes the launcher's own log lines.
const launcherName = "mercato"

// Info describes the running system. It is complete once Ready is closed.
type Info struct {
	Addrs
	AdminEmail    string
	AdminPassword string
	// ReadyIn is how long the system took from Run to every service
	// answering ready (before seeding).
	ReadyIn time.Duration
	// PIDs maps each process (its log label: the service's name, or
	// "<service>-<n>" for a service with replicas) to its process id when
	// it first started.
	PIDs map[string]int
}

// Launcher runs the whole system. Create it with New and call Run once.
type Launcher struct {
	cfg       Config
	ready     chan struct{}
	info      Info
	instances []*instance
	byLabel   map[string]*instance

	mu       sync.Mutex
	restarts map[string]int
}

// New returns a launcher for cfg (defaults filled in), or every problem
// with cfg.
func New(cfg Config) (*Launcher, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l := &Launcher{cfg: cfg, ready: make(chan struct{}), instances: newInstances(cfg),
		byLabel: map[string]*instance{}, restarts: map[string]int{}}
	for _, inst := range l.instances {
		l.byLabel[inst.label] = inst
	}
	return l, nil
}

// Restarts returns how many times the process labelled label was started
// again after it died. Safe to call while Run runs.
func (l *Launcher) Restarts(label string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.restarts[label]
}

// Config is the configuration in use, defaults filled in.
func (l *Launcher) Config() Config { return l.cfg }

// Ready is closed once every service is ready, the catalog is seeded and
// the banner is printed. It is never closed if Run fails before that.
func (l *Launcher) Ready() <-chan struct{} { return l.ready }

// Info describes the running system; call it only after Ready is closed.
func (l *Launcher) Info() Info { return l.info }

// Run starts the system and supervises it until ctx is cancelled, then
// stops every process and returns nil. It returns an error, after stopping
// whatever it started, when the system cannot start or becomes ready, or
// when a service exits on its own.
func (l *Launcher) Run(ctx context.Context) error {
	start := time.Now()
	cfg := l.cfg
	sink := newLogSink(cfg.Stdout, cfg.Color, cfg.textFormat(), append([]string{launcherName}, labels(l.instances)...))
	logger := observability.NewLogger(sink.writer(launcherName), "launcher", cfg.LogLevel)

	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	unlock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return err
	}
	defer unlock()
	password, err := resolveAdminPassword(cfg.DataDir, cfg.AdminPassword)
	if err != nil {
		return err
	}
	if cfg.PostgresURL != "" {
		if err := checkPostgres(ctx, cfg.PostgresURL); err != nil {
			return err
		}
	}

	// The broker binds its port first, so the ports picked for the
	// services below cannot collide with it.
	natsURL := cfg.NATSURL
	if natsURL == "" {
		broker, err := startBroker(ctx, filepath.Join(cfg.DataDir, "nats"))
		if err != nil {
			return err
		}
		defer func() {
			broker.Shutdown()
			broker.WaitForShutdown()
		}()
		natsURL = broker.ClientURL()
	} else {
		if err := prepareBroker(ctx, natsURL); err != nil {
			// The URL given is wrong: a configuration problem, reported
			// before anything started.
			return config.Join(err)
		}
		logger.InfoContext(ctx, "using external nats", "url", natsURL)
	}
	etcdURL := cfg.EtcdURL
	if cfg.Registry == RegistryEtcd {
		if etcdURL == "" {
			e, u, err := startEtcd(ctx, filepath.Join(cfg.DataDir, "etcd"))
			if err != nil {
				return err
			}
			defer e.Close()
			etcdURL = u
			logger.InfoContext(ctx, "etcd started", "url", etcdURL, "dir", filepath.Join(cfg.DataDir, "etcd"))
		} else if err := checkEtcd(ctx, etcdURL); err != nil {
			return config.Join(err)
		}
	}
	ids := make([]string, len(l.instances))
	for i, inst := range l.instances {
		ids[i] = inst.id
	}
	public, byID, err := allocateAddrs(ctx, cfg.Addr, ids)
	if err != nil {
		return err
	}
	cfg.Addr = public
	if cfg.NATSURL == "" {
		logger.InfoContext(ctx, "nats started", "url", natsURL, "store", filepath.Join(cfg.DataDir, "nats"))
	}
	addrs := map[string][]ServiceAddrs{}
	for _, inst := range l.instances {
		inst.addrs = byID[inst.id]
		addrs[inst.service] = append(addrs[inst.service], inst.addrs)
	}

	p := newPlan(cfg, natsURL, addrs, password)
	p.etcdURL = etcdURL
	first := map[string]ServiceAddrs{}
	for svc, list := range addrs {
		first[svc] = list[0]
	}
	l.info = Info{
		Addrs:      Addrs{Gateway: public, NATS: natsURL, EtcdURL: etcdURL, Services: first, Instances: addrs},
		AdminEmail: cfg.AdminEmail, AdminPassword: password,
		PIDs: map[string]int{},
	}

	sp := newSpawner()
	defer sp.close()
	exits := make(chan *child, len(l.instances))
	err = l.startServices(ctx, logger, p, sink, sp, exits)
	stop := func() { l.stopAll(ctx, logger) }
	if err != nil {
		stop()
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	l.info.ReadyIn = time.Since(start)
	logger.InfoContext(ctx, "all services ready", "ready_in", l.info.ReadyIn.Round(time.Millisecond).String())

	if !cfg.SkipSeed {
		if err := l.seed(ctx, logger); err != nil {
			var died *child
			select {
			case died = <-exits: // the seeding failed because a service died
			default:
			}
			stop()
			switch {
			case ctx.Err() != nil:
				return nil
			case died != nil:
				return fmt.Errorf("%s exited unexpectedly (%s)", died.name, died.exitStatus())
			default:
				return fmt.Errorf("seed demo catalog: %w", err)
			}
		}
	}
	if sink.text != nil {
		sink.waitQuiet(ctx, bannerQuiet, bannerQuietLimit)
	}
	sink.print(l.banner())
	close(l.ready)

	l.supervise(ctx, logger, p, sink, sp, exits)
	stop()
	return nil
}

// supervise restarts every process that dies, with a backoff, until ctx
// is cancelled. A process that keeps dying (crashLoopExits times within
// crashLoopWindow) is given up on, with a clear message, while the others
// keep running.
func (l *Launcher) supervise(ctx context.Context, logger *slog.Logger, p plan, sink *logSink, sp *spawner, exits chan *child) {
	restart := make(chan *instance)
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-exits:
			inst := l.byLabel[c.name]
			if inst == nil || inst.child != c {
				continue
			}
			l.writeTargets(ctx, logger)
			wait, again := inst.exited(time.Now())
			if !again {
				logger.ErrorContext(ctx, "service keeps exiting: given up on, the rest keep running",
					"name", inst.label, "status", c.exitStatus(), "exits", crashLoopExits, "within", crashLoopWindow.String())
				continue
			}
			logger.ErrorContext(ctx, "service exited unexpectedly; restarting",
				"name", inst.label, "status", c.exitStatus(), "restart_in", wait.String())
			time.AfterFunc(wait, func() {
				select {
				case restart <- inst:
				case <-ctx.Done():
				}
			})
		case inst := <-restart:
			if err := l.startInstance(ctx, logger, p, sink, sp, exits, inst); err != nil {
				logger.ErrorContext(ctx, "restart failed", "name", inst.label, "error", err.Error())
				// Counted as another exit of the instance, so a start that
				// keeps failing ends in the crash-loop verdict too.
				failed := &child{name: inst.label, done: closedDone(), exitErr: err}
				inst.child = failed
				go func() {
					select {
					case exits <- failed:
					case <-ctx.Done():
					}
				}()
				continue
			}
			l.mu.Lock()
			l.restarts[inst.label]++
			n := l.restarts[inst.label]
			l.mu.Unlock()
			logger.WarnContext(ctx, "service restarted", "name", inst.label, "pid", inst.child.cmd.Process.Pid, "restarts", n)
		}
	}
}

func closedDone() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// writeTargets writes targets.json, logging a failure (Prometheus keeps
// the previous file).
func (l *Launcher) writeTargets(ctx context.Context, logger *slog.Logger) {
	if err := writeTargets(l.cfg.DataDir, l.instances); err != nil {
		logger.WarnContext(ctx, "targets.json not written", "error", err.Error())
	}
}

// In text mode the banner waits for a pause in the processes' output:
// the gateway's access lines of the seeding (one per product, held up to
// 50 ms by the services' log buffer, logFlushDelay in cmd/mercato) then
// come out before it instead of pushing it off the screen. The pause is
// twice that buffer's delay; the limit bounds the wait when the output
// never pauses.
const (
	bannerQuiet      = 100 * time.Millisecond
	bannerQuietLimit = time.Second
)

// startServices starts every service and waits until all are ready. The
// services start together; the gateway starts as soon as they are ready,
// so its first connection to each succeeds instead of waiting out a gRPC
// reconnect backoff (a second), and it never routes to a service that is
// still migrating. It returns the children started, also on failure, for
// the caller to stop.
func (l *Launcher) startServices(ctx context.Context, logger *slog.Logger, p plan, sink *logSink, sp *spawner, exits chan *child) error {
	deadline := time.Now().Add(l.cfg.ReadyTimeout)
	for _, phase := range startPhases(l.instances) {
		started := make([]*child, 0, len(phase))
		for _, inst := range phase {
			if err := l.startInstance(ctx, logger, p, sink, sp, exits, inst); err != nil {
				return err
			}
			started = append(started, inst.child)
			l.info.PIDs[inst.label] = inst.child.cmd.Process.Pid
		}
		if err := l.waitReady(ctx, logger, started, exits, deadline); err != nil {
			return err
		}
	}
	return nil
}

// startInstance starts inst's process and lists it in targets.json.
func (l *Launcher) startInstance(ctx context.Context, logger *slog.Logger, p plan, sink *logSink, sp *spawner, exits chan *child, inst *instance) error {
	index := slices.Index(l.instancesOf(inst.service), inst)
	env, err := p.instanceEnv(inst.service, index)
	if err != nil {
		return err
	}
	c, err := startChild(sp, l.cfg.Executable, inst.service, inst.label, env, sink, exits)
	if err != nil {
		return err
	}
	c.adminAddr = inst.addrs.HTTP
	inst.child, inst.startedAt = c, time.Now()
	logger.InfoContext(ctx, "service started", "name", inst.label, "pid", c.cmd.Process.Pid,
		"grpc_addr", inst.addrs.GRPC, "http_addr", inst.addrs.HTTP)
	l.writeTargets(ctx, logger)
	return nil
}

func (l *Launcher) instancesOf(service string) []*instance {
	var out []*instance
	for _, inst := range l.instances {
		if inst.service == service {
			out = append(out, inst)
		}
	}
	return out
}

// checkPostgres fails early, with the server named, when PostgreSQL cannot
// be reached: otherwise every service would fail on its own.
func checkPostgres(ctx context.Context, rawURL string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	d, err := db.Open(ctx, db.Config{URL: rawURL, MaxOpenConns: 1})
	if err != nil {
		return fmt.Errorf("cannot reach PostgreSQL at %s: %w", redact(rawURL), err)
	}
	return d.Close()
}

// startBroker starts the embedded NATS server and creates the streams, so
// services find them whichever starts first.
func startBroker(ctx context.Context, dir string) (*server.Server, error) {
	srv, err := events.StartEmbedded(dir, loopback, -1)
	if err != nil {
		return nil, fmt.Errorf("start embedded NATS: %w", err)
	}
	err = func() error {
		nc, err := nats.Connect(srv.ClientURL(), nats.Name("mercato-launcher"))
		if err != nil {
			return fmt.Errorf("connect to embedded NATS: %w", err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return fmt.Errorf("embedded JetStream: %w", err)
		}
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return events.EnsureStreams(ctx, js, 1, system.Streams())
	}()
	if err != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, err
	}
	return srv, nil
}

// prepareBroker checks that the external NATS server at url answers, and
// creates the streams there, before any service starts.
func prepareBroker(ctx context.Context, url string) error {
	nc, err := nats.Connect(url, nats.Name("mercato-launcher"), nats.Timeout(5*time.Second))
	if err != nil {
		return fmt.Errorf("cannot reach NATS at %s: %w", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("JetStream at %s: %w", url, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := events.EnsureStreams(ctx, js, 1, system.Streams()); err != nil {
		return fmt.Errorf("NATS at %s (is JetStream on?): %w", url, err)
	}
	return nil
}

// Readiness polling: frequent enough that start-up is not slowed by the
// poll itself, each probe short so one stuck process does not delay the
// others' verdicts.
const (
	readyPollInterval = 25 * time.Millisecond
	readyProbeTimeout = 500 * time.Millisecond
)

// startPhases splits the instances into those started together first and
// the gateway, started once they are ready.
func startPhases(list []*instance) [][]*instance {
	var backends, edge []*instance
	for _, inst := range list {
		if inst.service == Gateway {
			edge = append(edge, inst)
		} else {
			backends = append(backends, inst)
		}
	}
	return [][]*instance{backends, edge}
}

// waitReady returns once every child answers 200 on /readyz. It fails when
// any child started so far exits first (naming it and its exit status), or
// at the deadline (naming those not ready and why).
func (l *Launcher) waitReady(ctx context.Context, logger *slog.Logger, children []*child, exits <-chan *child, deadline time.Time) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	client := &http.Client{Timeout: readyProbeTimeout, Transport: &http.Transport{DisableKeepAlives: true}}

	var mu sync.Mutex
	last := map[string]string{}
	readyCh := make(chan string, len(children))
	for _, c := range children {
		target := "http://" + c.adminAddr + "/readyz"
		go func() {
			tick := time.NewTicker(readyPollInterval)
			defer tick.Stop()
			for {
				status, err := probe(ctx, client, target)
				if status == http.StatusOK {
					readyCh <- c.name
					return
				}
				mu.Lock()
				if err != nil {
					last[c.name] = err.Error()
				} else {
					last[c.name] = fmt.Sprintf("status %d", status)
				}
				mu.Unlock()
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		}()
	}

	timeout := time.NewTimer(time.Until(deadline))
	defer timeout.Stop()
	pending := map[string]bool{}
	for _, c := range children {
		pending[c.name] = true
	}
	for len(pending) > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case name := <-readyCh:
			delete(pending, name)
			logger.InfoContext(ctx, "service ready", "name", name)
		case c := <-exits:
			logger.ErrorContext(ctx, "service exited during start-up", "name", c.name, "status", c.exitStatus())
			return fmt.Errorf("%s exited during start-up (%s, exit code %d); its log above says why", c.name, c.exitStatus(), c.exitCode())
		case <-timeout.C:
			mu.Lock()
			var waiting []string
			for _, c := range children {
				if pending[c.name] {
					waiting = append(waiting, fmt.Sprintf("%s (%s)", c.name, last[c.name]))
				}
			}
			mu.Unlock()
			return fmt.Errorf("not ready after %s: %s", l.cfg.ReadyTimeout, strings.Join(waiting, ", "))
		}
	}
	return nil
}

// probe GETs target and returns the status code.
func probe(ctx context.Context, client *http.Client, target string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

func (l *Launcher) seed(ctx context.Context, logger *slog.Logger) error {
	transport := &http.Transport{}
	defer transport.CloseIdleConnections()
	s := seeder{
		client:   &http.Client{Timeout: 10 * time.Second, Transport: transport},
		baseURL:  l.info.GatewayURL(),
		email:    l.info.AdminEmail,
		password: l.info.AdminPassword,
	}
	started := time.Now()
	created, err := s.seed(ctx)
	if err != nil {
		return err
	}
	if created > 0 {
		logger.InfoContext(ctx, "demo catalog seeded", "products", created, "took", time.Since(started).Round(time.Millisecond).String())
	}
	return nil
}

// stopAll stops the gateway first, so no new request comes in while the
// services behind it drain, then every other process at once. Each gets
// StopTimeout to exit before it is killed. targets.json is left empty.
func (l *Launcher) stopAll(ctx context.Context, logger *slog.Logger) {
	stopOne := func(c *child) {
		if c.exited() {
			return
		}
		began := time.Now()
		killed := c.stop(l.cfg.StopTimeout)
		attrs := []any{"name", c.name, "status", c.exitStatus(), "took", time.Since(began).Round(time.Millisecond).String()}
		if killed {
			logger.WarnContext(ctx, "service killed after stop timeout", attrs...)
			return
		}
		logger.InfoContext(ctx, "service stopped", attrs...)
	}
	logger.InfoContext(ctx, "stopping")
	var rest []*child
	for _, inst := range l.instances {
		switch {
		case inst.child == nil || inst.child.cmd == nil:
		case inst.service == Gateway:
			stopOne(inst.child)
		default:
			rest = append(rest, inst.child)
		}
	}
	var wg sync.WaitGroup
	for _, c := range rest {
		wg.Go(func() { stopOne(c) })
	}
	wg.Wait()
	if err := writeTargets(l.cfg.DataDir, nil); err != nil { // nothing runs any more
		logger.WarnContext(ctx, "targets.json not written", "error", err.Error())
	}
}

// banner tells a person where everything is.
func (l *Launcher) banner() string {
	u := l.info.GatewayURL()
	data := l.cfg.DataDir + " (SQLite)"
	if l.cfg.PostgresURL != "" {
		data = redact(l.cfg.PostgresURL) + " (PostgreSQL, databases " + l.cfg.DBPrefix + "<service>)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n  mercato is up (ready in %s)\n\n", l.info.ReadyIn.Round(time.Millisecond))
	fmt.Fprintf(&b, "    API       %s\n", u)
	fmt.Fprintf(&b, "    Docs      %s/docs\n", u)
	fmt.Fprintf(&b, "    OpenAPI   %s/openapi.json\n", u)
	fmt.Fprintf(&b, "    Admin     %s\n", l.info.AdminEmail)
	fmt.Fprintf(&b, "    Password  %s\n", l.info.AdminPassword)
	fmt.Fprintf(&b, "    Data      %s\n", data)
	if l.cfg.Registry == RegistryEtcd {
		fmt.Fprintf(&b, "    Registry  etcd %s\n", l.info.EtcdURL)
	}
	if len(l.cfg.Replicas) > 0 {
		var counts []string
		for _, svc := range l.cfg.Services {
			counts = append(counts, fmt.Sprintf("%s×%d", svc, l.cfg.replicasOf(svc)))
		}
		fmt.Fprintf(&b, "    Services  %s\n", strings.Join(counts, " "))
	}
	fmt.Fprintf(&b, "    Targets   %s (Prometheus file_sd)\n", filepath.Join(l.cfg.DataDir, targetsFile))
	fmt.Fprintf(&b, "\n  Ctrl-C to stop.\n\n")
	return b.String()
}

// redact hides a password in a database URL.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/launcher"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
	"github.com/mercato-dev/mercato/internal/platform/events"
	services "github.com/mercato-dev/mercato/internal/system"
)

// A cluster runs the system the way `mercato up` does (an embedded NATS,
// then every service as its own `mercato serve <service>` process on
// loopback ports, the gateway last) but lets the test stop a service and
// start it again when it chooses, with another environment (a fault
// armed, a slow provider), which `mercato up` does not: it restarts a
// service that dies at once, as it was.
type cluster struct {
	api
	dir      string
	postgres string // the PostgreSQL server; empty for SQLite
	dbPrefix string
	natsURL  string
	secret   string
	addrs    map[string]clusterAddrs
	// env is added to a service's environment in every life, before what
	// the life itself adds.
	env   map[string][]string
	admin string // an administrator's access token

	mu    sync.Mutex
	procs map[string]*serviceProc
	// ended holds the end of each earlier life's output, for a failure
	// report.
	ended map[string][]string
}

type clusterAddrs struct{ grpc, http string }

// serviceProc is one life of a service process.
type serviceProc struct {
	cmd    *exec.Cmd
	out    *logBuffer
	exited chan struct{}
}

// Ports a cluster hands out lie below the kernel's ephemeral range (32768
// and up on Linux, 49152 on macOS), from which it picks the local port of
// every outgoing connection and `:0` listener. A port picked there and
// released until a service binds it, or left free while a service is down
// for a restart, can be taken by any connection meanwhile; below the
// range only another listener on a fixed port could take it.
const (
	clusterPortMin = 20000
	clusterPortMax = 32000
)

var (
	clusterPortsMu sync.Mutex
	// clusterPorts are the ports handed out so far, never handed out again:
	// clusters run in parallel.
	clusterPorts = map[int]bool{}
)

// clusterAddr returns a loopback address no other cluster of this test
// binary uses and that is free now.
func clusterAddr(t *testing.T) string {
	t.Helper()
	clusterPortsMu.Lock()
	defer clusterPortsMu.Unlock()
	for range 1000 {
		port := clusterPortMin + mrand.IntN(clusterPortMax-clusterPortMin)
		if clusterPorts[port] {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		_ = l.Close()
		clusterPorts[port] = true
		return addr
	}
	t.Fatal("no free port below the ephemeral range")
	return ""
}

// backends are the services behind the gateway, started together: every
// service of the table but the gateway.
var backends = slices.DeleteFunc(services.Names(), func(name string) bool { return name == "gateway" })

// clusterStopTimeout bounds the graceful stop of one service.
const clusterStopTimeout = 20 * time.Second

// startCluster starts the whole system on engine ("sqlite" or
// "postgres"), each service with the environment `mercato up` would give
// it plus env[service] (in every life), and returns once the gateway is
// ready.
func startCluster(t *testing.T, engine string, env map[string][]string) *cluster {
	t.Helper()
	c := &cluster{
		api:    api{client: &http.Client{Timeout: 15 * time.Second}},
		dir:    t.TempDir(),
		secret: rand.Text(),
		addrs:  map[string]clusterAddrs{},
		env:    map[string][]string{},
		procs:  map[string]*serviceProc{},
		ended:  map[string][]string{},
	}
	for name, vars := range env {
		c.env[name] = slices.Clone(vars)
	}
	if engine == "postgres" {
		c.postgres = dbtest.PostgresServerURL()
		c.dbPrefix = "e2e_" + strings.ToLower(rand.Text()[:8]) + "_"
		t.Cleanup(func() { dropDatabases(t, c.postgres, c.dbPrefix) })
	}

	broker, err := events.StartEmbedded(filepath.Join(c.dir, "nats"), "127.0.0.1", -1)
	require.NoError(t, err)
	t.Cleanup(func() {
		broker.Shutdown()
		broker.WaitForShutdown()
	})
	c.natsURL = broker.ClientURL()
	nc, err := nats.Connect(c.natsURL)
	require.NoError(t, err)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	require.NoError(t, events.EnsureStreams(t.Context(), js, 1, services.Streams()))
	nc.Close()

	for _, name := range append(slices.Clone(backends), "gateway") {
		c.addrs[name] = clusterAddrs{grpc: clusterAddr(t), http: clusterAddr(t)}
	}
	gatewayAddr := clusterAddr(t)
	c.base = "http://" + gatewayAddr
	// Registered before the processes start, so it runs after their
	// cleanups have stopped them (cleanups run last-registered first).
	t.Cleanup(func() {
		if t.Failed() {
			c.dumpLogs(t)
		}
	})
	t.Cleanup(func() { c.stopAll(t) })

	for _, name := range backends {
		c.start(t, name)
	}
	for _, name := range backends {
		c.waitReady(t, name)
	}
	c.start(t, "gateway")
	c.waitReady(t, "gateway")
	c.admin = c.login(t, "admin@mercato.local", e2eAdminPassword).AccessToken
	return c
}

// serviceEnv is what the launcher gives service (launcher.ChildEnv),
// then the cluster's own additions, then extra: of variables set twice the
// last wins (os/exec keeps the last).
func (c *cluster) serviceEnv(t *testing.T, service string, extra ...string) []string {
	t.Helper()
	addrs := make(map[string]launcher.ServiceAddrs, len(c.addrs))
	for name, a := range c.addrs {
		addrs[name] = launcher.ServiceAddrs{GRPC: a.grpc, HTTP: a.http}
	}
	cfg := launcher.Config{
		Addr:        strings.TrimPrefix(c.base, "http://"),
		DataDir:     c.dir,
		PostgresURL: c.postgres,
		DBPrefix:    c.dbPrefix,
		AdminEmail:  "admin@mercato.local",
		Services:    append(slices.Clone(backends), "gateway"),
		Env:         os.Environ(),
	}
	env, err := launcher.ChildEnv(cfg, c.natsURL, addrs, e2eAdminPassword, c.secret, service)
	require.NoError(t, err)
	// As in startSystem: rate limits are tested where they live.
	env = append(env, "MERCATO_RATE_LIMIT_RPS=0", "MERCATO_LOGIN_RATE_PER_MIN=0", "MERCATO_LOGIN_IP_RATE_PER_MIN=0")
	env = append(env, c.env[service]...)
	return append(env, extra...)
}

// start starts a life of service; it does not wait for it to be ready.
func (c *cluster) start(t *testing.T, service string, extra ...string) *serviceProc {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.procs[service]; p != nil {
		select {
		case <-p.exited:
		default:
			t.Fatalf("%s is already running", service)
		}
	}
	p := &serviceProc{out: &logBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(mercatoBin, "serve", service)
	p.cmd.Env = c.serviceEnv(t, service, extra...)
	p.cmd.Dir = c.dir
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = sysProcAttr()
	require.NoError(t, p.cmd.Start())
	go func() {
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	if old := c.procs[service]; old != nil {
		c.ended[service] = append(c.ended[service], fmt.Sprintf("(%s)\n%s", old.cmd.ProcessState, lastLines(old.out.String(), 30)))
	}
	c.procs[service] = p
	return p
}

func (c *cluster) proc(service string) *serviceProc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.procs[service]
}

// running reports whether the service's current life has not ended.
func (c *cluster) running(service string) bool {
	select {
	case <-c.proc(service).exited:
		return false
	default:
		return true
	}
}

// waitReady waits until the service's /readyz answers 200, failing at once
// if the process exits first.
func (c *cluster) waitReady(t *testing.T, service string) {
	t.Helper()
	p := c.proc(service)
	probe := &http.Client{Timeout: time.Second}
	waitFor(t, startTimeout, service+" is ready", func() (bool, string) {
		select {
		case <-p.exited:
			t.Fatalf("%s exited while starting (%s):\n%s", service, p.cmd.ProcessState, lastLines(p.out.String(), 30))
		default:
		}
		resp, err := probe.Get("http://" + c.addrs[service].http + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
}

// routeProbes are requests the gateway forwards to a service; any answer
// but a gateway error shows the gateway reaches it.
var routeProbes = map[string]string{
	"orders":    "/api/v1/orders?page_size=1",
	"payments":  "/api/v1/payments?order_id=00000000-0000-4000-8000-000000000000",
	"inventory": "/api/v1/inventory/E2E-PROBE",
}

// waitRoutable waits until the gateway reaches service again (its
// connection backs off while the service is down).
func (c *cluster) waitRoutable(t *testing.T, service string) {
	t.Helper()
	path, ok := routeProbes[service]
	require.True(t, ok, "no route probe for %s", service)
	// Also called from cleanups, after the test's context is cancelled.
	ctx := context.WithoutCancel(t.Context())
	waitFor(t, startTimeout, "the gateway reaches "+service, func() (bool, string) {
		r, err := c.send(ctx, http.MethodGet, path, c.admin, nil)
		if err != nil {
			return false, err.Error()
		}
		return r.status < 500, fmt.Sprintf("%d %s", r.status, r.body)
	})
}

// restart starts service again with extra in its environment once its
// previous life has ended, and waits until the gateway reaches it.
func (c *cluster) restart(t *testing.T, service string, extra ...string) {
	t.Helper()
	c.start(t, service, extra...)
	c.waitReady(t, service)
	c.waitRoutable(t, service)
}

// kill SIGKILLs the service (an outage, a crash) and waits until it is gone.
func (c *cluster) kill(t *testing.T, service string) {
	t.Helper()
	p := c.proc(service)
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// stop stops the service gracefully (SIGTERM), killing it after
// clusterStopTimeout.
func (c *cluster) stop(t *testing.T, service string) {
	t.Helper()
	p := c.proc(service)
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(clusterStopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
		t.Errorf("%s did not stop within %s", service, clusterStopTimeout)
	}
}

// waitDeath waits for the service to die by itself and returns how it
// ended.
func (c *cluster) waitDeath(t *testing.T, service string, timeout time.Duration) *os.ProcessState {
	t.Helper()
	p := c.proc(service)
	select {
	case <-p.exited:
		return p.cmd.ProcessState
	case <-time.After(timeout):
		t.Fatalf("%s is still running after %s:\n%s", service, timeout, lastLines(p.out.String(), 30))
		return nil
	}
}

// stopAll stops the gateway, then every other service.
func (c *cluster) stopAll(t *testing.T) {
	if c.proc("gateway") != nil {
		c.stop(t, "gateway")
	}
	var wg sync.WaitGroup
	for _, name := range backends {
		if c.proc(name) != nil {
			wg.Go(func() { c.stop(t, name) })
		}
	}
	wg.Wait()
}

func (c *cluster) dumpLogs(t *testing.T) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, name := range append(slices.Clone(backends), "gateway") {
		lives := c.ended[name]
		for i := max(0, len(lives)-3); i < len(lives); i++ {
			t.Logf("%s, life %d, ended %s", name, i+1, lives[i])
		}
		if p := c.procs[name]; p != nil {
			t.Logf("%s, current life (last %d lines):\n%s", name, failureLogLines, lastLines(p.out.String(), failureLogLines))
		}
	}
}

// metric reads the value of one sample from service's /metrics, e.g.
// `mercato_orders_saga_step_retries_total{step="authorize_payment"}`; 0 when the
// sample is not there (yet).
func (c *cluster) metric(t *testing.T, service, sample string) float64 {
	t.Helper()
	v, err := scrapeMetric(t.Context(), c.client, c.addrs[service].http, sample)
	require.NoError(t, err)
	return v
}

// scrapeMetric adds up the samples of a metric on /metrics of the process
// whose admin address is addr: sample is either one sample's name with
// its labels, as the exposition writes it, or a metric's name followed by
// label pairs every sample counted must have (`grpc_server_handled_total
// grpc_method="GetProduct"`). 0 when there is none (yet).
func scrapeMetric(ctx context.Context, client *http.Client, addr, sample string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	var b strings.Builder
	if _, err := io.Copy(&b, resp.Body); err != nil {
		return 0, err
	}
	fields := strings.Fields(sample)
	name, labels := fields[0], fields[1:]
	total := 0.0
	for _, line := range strings.Split(b.String(), "\n") {
		series, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		if len(labels) == 0 {
			if series != name {
				continue
			}
		} else {
			labelSet, isOf := strings.CutPrefix(series, name+"{")
			if !isOf || !containsAll(labelSet, labels) {
				continue
			}
		}
		var v float64
		if _, err := fmt.Sscan(value, &v); err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		total += v
	}
	return total, nil
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// killedBySIGKILL reports whether the process ended from SIGKILL.
func killedBySIGKILL(ps *os.ProcessState) bool {
	ws, ok := ps.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

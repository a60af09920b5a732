package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	osuser "os/user"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// natsOutage is how long the external NATS server stays down.
const natsOutage = 30 * time.Second

// TestNATSOutage runs the system on an external NATS server and takes the
// server away for natsOutage while customers keep checking out. The
// gateway stays ready and checkouts are accepted and confirmed throughout:
// the saga calls its neighbours over gRPC, and events wait in the outboxes.
// Once the server is back on its port and store, every event is delivered
// exactly once: each confirmed order notified once, each checked-out cart
// emptied.
func TestNATSOutage(t *testing.T) {
	broker := startNATSServer(t)
	s := startSystem(t, options{adminPassword: e2eAdminPassword, natsURL: broker.url})
	admin := s.login(t, s.adminEmail, s.adminPassword).AccessToken
	// More units than the shoppers can buy in the time.
	run := newCheckoutRun(t, s, admin, 100_000)
	readyz := "http://" + s.adminAddrs(t)["gateway"] + "/readyz"

	// A shopper is a new customer who checks out their cart, then buys
	// now; both orders must be confirmed. The shoppers come one after
	// another until told to stop.
	var (
		confirmedAt []time.Time
		lastCart    atomic.Value // the token of the latest cart checkout
		mu          sync.Mutex
		errs        errorList
		stop        = make(chan struct{})
		done        = make(chan struct{})
	)
	confirmedCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(confirmedAt)
	}
	go func() {
		defer close(done)
		ctx := t.Context()
		probe := &http.Client{Timeout: 2 * time.Second}
		for {
			select {
			case <-stop:
				return
			default:
			}
			token, err := s.newCustomer(ctx)
			if err != nil {
				errs.add(err)
				return
			}
			for _, fromCart := range []bool{true, false} {
				id, err := run.place(ctx, token, fromCart)
				if err == nil {
					err = waitConfirmed(ctx, s.api, token, id)
				}
				if err != nil {
					errs.add(err)
					return
				}
				mu.Lock()
				confirmedAt = append(confirmedAt, time.Now())
				mu.Unlock()
			}
			lastCart.Store(token)
			if err := expectStatus(ctx, probe, readyz, http.StatusOK); err != nil {
				errs.add(fmt.Errorf("gateway readiness: %w", err))
				return
			}
		}
	}()
	// waitOrders waits until n more orders are confirmed, failing at once
	// if the shoppers gave up.
	waitOrders := func(n int) {
		t.Helper()
		want := confirmedCount() + n
		waitFor(t, settleTimeout, fmt.Sprintf("%d more confirmed orders", n), func() (bool, string) {
			select {
			case <-done:
				require.NoError(t, errs.err())
				t.Fatal("the shoppers stopped")
			default:
			}
			got := confirmedCount()
			return got >= want, fmt.Sprint(got)
		})
	}
	stopShoppers := sync.OnceFunc(func() {
		close(stop)
		<-done
	})
	defer stopShoppers()

	waitOrders(4)
	broker.kill(t)
	down := time.Now()
	select {
	case <-done:
		require.NoError(t, errs.err())
		t.Fatal("the shoppers stopped")
	case <-time.After(natsOutage):
	}
	// The cart checked out last is not emptied yet: its order's event is
	// still in an outbox.
	var cart struct {
		Items []itemInput `json:"items"`
	}
	s.do(t, http.MethodGet, "/api/v1/cart", lastCart.Load().(string), nil).decode(t, http.StatusOK, &cart)
	require.NotEmpty(t, cart.Items, "no event flows while NATS is down")
	broker.start(t)
	up := time.Now()
	waitOrders(4)
	stopShoppers()
	require.NoError(t, errs.err())

	// Checkouts went on throughout: some order was confirmed in every
	// tenth of the outage.
	mu.Lock()
	during := slices.Clone(confirmedAt)
	mu.Unlock()
	slice := natsOutage / 10
	for from := down; from.Add(slice).Before(up); from = from.Add(slice) {
		require.True(t, slices.ContainsFunc(during, func(at time.Time) bool { return !at.Before(from) && at.Before(from.Add(slice)) }),
			"an order was confirmed between %s and %s into the outage", from.Sub(down), from.Add(slice).Sub(down))
	}

	byStatus := run.requireSettled(t, time.Minute)
	require.Len(t, byStatus[confirmed], len(run.placed()), "every order is confirmed")
	run.requireCartsCleaned(t, byStatus[confirmed])
}

// TestPostgresRestart restarts PostgreSQL while customers check out. The
// services ride it out without restarting: their processes are the same
// before and after, every order finishes and the checkout invariants hold.
//
// The server is the test's own (startPostgresServer): restarting the
// machine's would break every other test using it at that moment, in this
// package or any other, which no ordering of this package's tests avoids.
func TestPostgresRestart(t *testing.T) {
	pg := startPostgresServer(t)
	s := startSystem(t, options{adminPassword: e2eAdminPassword, postgres: pg.url, dbPrefix: "e2e_"})
	admin := s.login(t, s.adminEmail, s.adminPassword).AccessToken
	run := newCheckoutRun(t, s, admin, 100)
	tokens := s.customers(t, 8)
	pids := s.servicePIDs(t)

	const perCustomer = 30
	stop := make(chan struct{})
	var errs errorList
	var wg sync.WaitGroup
	for _, token := range tokens {
		wg.Go(func() {
			for range perCustomer {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := run.place(t.Context(), token, false); err != nil {
					errs.add(err)
					return
				}
			}
		})
	}
	placed := func(n int) func() (bool, string) {
		return func() (bool, string) {
			got := len(run.placed())
			return got >= n, fmt.Sprint(got)
		}
	}
	waitFor(t, settleTimeout, "checkouts under way", placed(20))
	pg.restart(t)
	waitFor(t, crashTimeout, "checkouts go on after the restart", placed(len(run.placed())+20))
	close(stop)
	wg.Wait()
	require.NoError(t, errs.err())

	run.requireSettled(t, crashTimeout)
	require.Equal(t, pids, s.servicePIDs(t), "no service was restarted")
	require.False(t, slices.ContainsFunc(s.launcherLogs(t), func(l launcherLog) bool {
		return l.Msg == "service exited unexpectedly; restarting"
	}), "no service exited")
}

// waitConfirmed waits for the order to be confirmed, reading it with
// wait_seconds (the read answers once the checkout has finished).
func waitConfirmed(ctx context.Context, a api, token, id string) error {
	deadline := time.Now().Add(settleTimeout)
	for {
		r, err := a.send(ctx, http.MethodGet, "/api/v1/orders/"+id+"?wait_seconds=5", token, nil)
		var o order
		if err := expectReply(r, err, http.StatusOK, &o); err != nil {
			return fmt.Errorf("read order %s: %w", id, err)
		}
		switch {
		case o.Status == confirmed:
			return nil
		case o.Status != pending:
			return fmt.Errorf("order %s ended %s (%s)", id, o.Status, o.Reason)
		case time.Now().After(deadline):
			return fmt.Errorf("order %s still pending after %s", id, settleTimeout)
		}
	}
}

// expectStatus GETs url and requires status.
func expectStatus(ctx context.Context, client *http.Client, url string, status int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != status {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// A natsServer is a nats-server process of the test's own, which it can
// kill and start again on the same port and store.
type natsServer struct {
	url    string
	config string
	mu     sync.Mutex
	cmd    *exec.Cmd
	out    *logBuffer
	exited chan struct{}
}

// natsServerBin builds nats-server once, from the module the system embeds
// its broker from: the external server is the version the system is
// tested with, and nothing needs installing.
var natsServerBin = sync.OnceValues(func() (string, error) {
	bin := filepath.Join(filepath.Dir(mercatoBin), "nats-server")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build nats-server: %w\n%s", err, out)
	}
	return bin, nil
})

// startNATSServer starts a JetStream server on a free port, its store in a
// temporary directory, and stops it when the test ends (after the system,
// whose cleanup is registered later).
func startNATSServer(t *testing.T) *natsServer {
	t.Helper()
	dir := t.TempDir()
	addr := clusterAddr(t)
	// Every write reaches the disk before it is acknowledged: by default
	// the server writes in the background, and a SIGKILL could lose the
	// last milliseconds of what it acknowledged, which is NATS's
	// durability, not the system's.
	config := filepath.Join(dir, "nats.conf")
	require.NoError(t, os.WriteFile(config, fmt.Appendf(nil,
		"listen: %q\njetstream {\n  store_dir: %q\n  sync_interval: always\n}\n", addr, filepath.Join(dir, "store")), 0o600))
	n := &natsServer{url: "nats://" + addr, config: config}
	n.start(t)
	t.Cleanup(func() {
		n.kill(t)
		if t.Failed() {
			t.Logf("nats-server output (last %d lines):\n%s", 30, lastLines(n.out.String(), 30))
		}
	})
	return n
}

// start starts a life of the server and waits until JetStream answers.
func (n *natsServer) start(t *testing.T) {
	t.Helper()
	bin, err := natsServerBin()
	require.NoError(t, err)
	n.mu.Lock()
	n.cmd = exec.Command(bin, "-c", n.config)
	n.out = &logBuffer{}
	n.cmd.Stdout, n.cmd.Stderr = n.out, n.out
	n.cmd.SysProcAttr = sysProcAttr()
	n.exited = make(chan struct{})
	require.NoError(t, n.cmd.Start())
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	waitFor(t, startTimeout, "nats-server answers", func() (bool, string) {
		select {
		case <-exited:
			t.Fatalf("nats-server exited (%s):\n%s", cmd.ProcessState, n.out.String())
		default:
		}
		nc, err := nats.Connect(n.url, nats.Timeout(time.Second))
		if err != nil {
			return false, err.Error()
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return false, err.Error()
		}
		if _, err := js.AccountInfo(t.Context()); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
}

// kill SIGKILLs the server and waits until it is gone.
func (n *natsServer) kill(t *testing.T) {
	t.Helper()
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	_ = cmd.Process.Kill()
	<-exited
}

// A postgresServer is a PostgreSQL server of the test's own: its cluster in
// a temporary directory, listening on a free loopback port, trust auth.
type postgresServer struct {
	url   string
	bin   string
	data  string
	port  string
	creds *syscall.Credential
	mu    sync.Mutex
	cmd   *exec.Cmd
	out   *logBuffer
	done  chan struct{}
}

// startPostgresServer creates and starts a cluster with the machine's
// PostgreSQL binaries, which the suite needs anyway, and stops it when the
// test ends, after the system.
func startPostgresServer(t *testing.T) *postgresServer {
	t.Helper()
	bin := postgresBinDir()
	if bin == "" {
		t.Fatal("no PostgreSQL server binaries (initdb, postgres) found: install PostgreSQL (Debian: apt-get install postgresql), as the suite's other PostgreSQL tests need")
	}
	// Made by hand, not t.TempDir: the server's user must reach it.
	dir, err := os.MkdirTemp("", "mercato-e2e-pg-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	_, port, err := net.SplitHostPort(clusterAddr(t))
	require.NoError(t, err)
	p := &postgresServer{bin: bin, data: filepath.Join(dir, "data"), port: port,
		url: "postgres://postgres@127.0.0.1:" + port + "/postgres?sslmode=disable"}
	// PostgreSQL refuses to run as root; it runs as the postgres user then.
	if os.Geteuid() == 0 {
		u, err := osuser.Lookup("postgres")
		require.NoError(t, err, "running as root needs a postgres user to run the server as")
		uid, err := strconv.Atoi(u.Uid)
		require.NoError(t, err)
		gid, err := strconv.Atoi(u.Gid)
		require.NoError(t, err)
		p.creds = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		require.NoError(t, os.Chown(dir, uid, gid))
	}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", p.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: p.creds}
	out, err := initdb.CombinedOutput()
	require.NoError(t, err, "initdb:\n%s", out)
	p.start(t)
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("postgres output (last %d lines):\n%s", 30, lastLines(p.out.String(), 30))
		}
	})
	return p
}

// postgresBinDir is where initdb and postgres are: on the PATH, or in
// Debian's versioned directory (the newest); empty when nowhere.
func postgresBinDir() string {
	if path, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(path)
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return va - vb
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i]
		}
	}
	return ""
}

// start starts the server and waits until it accepts connections.
func (p *postgresServer) start(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	// fsync off: the test survives restarts of the server, not of the
	// machine. Enough connections for every service's pool.
	p.cmd = exec.Command(filepath.Join(p.bin, "postgres"), "-D", p.data, "-p", p.port, "-k", filepath.Dir(p.data),
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=300")
	p.out = &logBuffer{}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.creds, Pdeathsig: syscall.SIGTERM}
	p.done = make(chan struct{})
	require.NoError(t, p.cmd.Start())
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	waitFor(t, startTimeout, "postgres accepts connections", func() (bool, string) {
		select {
		case <-done:
			t.Fatalf("postgres exited (%s):\n%s", cmd.ProcessState, p.out.String())
		default:
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, p.url)
		if err != nil {
			return false, err.Error()
		}
		_ = conn.Close(ctx)
		return true, ""
	})
}

// stop shuts the server down the way `pg_ctl restart` (and pg_ctlcluster)
// does by default, in fast mode: SIGINT, which ends every session at once.
func (p *postgresServer) stop(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-done:
	case <-time.After(stopTimeout):
		_ = cmd.Process.Kill()
		<-done
		t.Errorf("postgres did not stop within %s", stopTimeout)
	}
}

// restart stops the server and starts it again on the same port and data.
func (p *postgresServer) restart(t *testing.T) {
	t.Helper()
	p.stop(t)
	p.start(t)
}

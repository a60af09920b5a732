package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// getProductsHandled counts the product reads a catalog instance answered.
const getProductsHandled = `grpc_server_handled_total grpc_method="GetProduct" grpc_code="OK"`

// TestReplicasShareReadsAndSurviveAKill runs three catalog instances.
// Product reads through the gateway are spread over all three; one of
// them killed under load costs no read, and `mercato up` brings it back
// on its ports, where it serves again and is listed for Prometheus again.
func TestReplicasShareReadsAndSurviveAKill(t *testing.T) {
	s := startSystem(t, options{adminPassword: e2eAdminPassword, replicas: "catalog=3"})
	instances := []string{"catalog-1", "catalog-2", "catalog-3"}
	addrs := s.adminAddrs(t)
	var ids []string
	for _, p := range s.listAll(t, nil, 100) {
		ids = append(ids, p.ID)
	}
	handled := func(instance string) float64 {
		t.Helper()
		v, err := scrapeMetric(t.Context(), s.client, addrs[instance], getProductsHandled)
		require.NoError(t, err)
		return v
	}

	const reads = 3000
	before := map[string]float64{}
	for _, inst := range instances {
		before[inst] = handled(inst)
	}
	load := s.readProducts(t, ids, reads)
	load.wait(t)
	require.EqualValues(t, reads, load.ok.Load())
	for _, inst := range instances {
		share := handled(inst) - before[inst]
		t.Logf("%s answered %.0f of %d reads", inst, share, reads)
		require.GreaterOrEqual(t, share, 0.15*reads, "%s takes its share", inst)
	}

	// Killed mid-load: the reads it had in hand are answered by another
	// instance, and it is routed around until it is back.
	victim := s.servicePIDs(t)["catalog-2"]
	load = s.readProducts(t, ids, 0)
	waitFor(t, settleTimeout, "reads under way", func() (bool, string) {
		return load.ok.Load() >= 300, fmt.Sprint(load.ok.Load())
	})
	require.NoError(t, syscall.Kill(victim, syscall.SIGKILL))
	waitFor(t, startTimeout, "mercato up restarts catalog-2", func() (bool, string) {
		return s.launcherSaid(t, "service restarted", "catalog-2"), "not restarted"
	})
	require.True(t, s.launcherSaid(t, "service exited unexpectedly; restarting", "catalog-2"))
	require.True(t, processGone(victim))
	require.NotEqual(t, victim, s.servicePIDs(t)["catalog-2"])
	require.Equal(t, addrs["catalog-2"], s.adminAddrs(t)["catalog-2"], "it keeps its ports")
	waitFor(t, startTimeout, "the new catalog-2 answers reads", func() (bool, string) {
		v, err := scrapeMetric(t.Context(), s.client, addrs["catalog-2"], getProductsHandled)
		if err != nil {
			return false, err.Error()
		}
		return v >= 50, fmt.Sprint(v)
	})
	waitFor(t, settleTimeout, "targets.json lists catalog-2 again", func() (bool, string) {
		targets := readTargets(t, s.dataDir)
		return targets["catalog-2"] == addrs["catalog-2"], fmt.Sprint(targets)
	})
	load.stop()
	load.wait(t)
	t.Logf("%d reads while catalog-2 was killed and restarted", load.ok.Load())
	require.Equal(t, map[string]string{"catalog-1": addrs["catalog-1"], "catalog-2": addrs["catalog-2"], "catalog-3": addrs["catalog-3"]},
		catalogTargets(readTargets(t, s.dataDir)))
}

// TestReplicasOrdersSurviveAKill runs two orders instances and kills one
// while 200 checkouts are placed by 20 customers at once. A checkout whose
// answer was lost is sent again under its Idempotency-Key; every order
// finishes, and the checkout invariants hold.
func TestReplicasOrdersSurviveAKill(t *testing.T) {
	s := startSystem(t, options{adminPassword: e2eAdminPassword, replicas: "orders=2"})
	admin := s.login(t, s.adminEmail, s.adminPassword).AccessToken
	const customers, each = 20, 10
	// Fewer units than orders: some are rejected, which must hold no stock.
	run := newCheckoutRun(t, s, admin, 150)
	tokens := s.customers(t, customers)
	victim := s.servicePIDs(t)["orders-2"]

	var errs errorList
	var wg sync.WaitGroup
	for _, token := range tokens {
		wg.Go(func() {
			for range each {
				if _, err := run.place(t.Context(), token, false); err != nil {
					errs.add(err)
					return
				}
			}
		})
	}
	waitFor(t, settleTimeout, "checkouts under way", func() (bool, string) {
		n := len(run.placed())
		return n >= 30, fmt.Sprint(n)
	})
	require.NoError(t, syscall.Kill(victim, syscall.SIGKILL))
	wg.Wait()
	require.NoError(t, errs.err())
	require.Len(t, run.placed(), customers*each)
	waitFor(t, startTimeout, "mercato up restarts orders-2", func() (bool, string) {
		return s.launcherSaid(t, "service restarted", "orders-2"), "not restarted"
	})
	run.requireSettled(t, crashTimeout)
}

// readLoad reads products through the gateway from several goroutines.
type readLoad struct {
	ok      atomic.Int64
	stopped chan struct{}
	once    sync.Once
	done    sync.WaitGroup
	errs    errorList
}

// readProductWorkers is how many reads are in flight at once.
const readProductWorkers = 16

// readProducts reads the products, round and round, until n reads are
// answered, or until stopped when n is 0. Every answer must be 200.
func (s *system) readProducts(t *testing.T, ids []string, n int64) *readLoad {
	t.Helper()
	l := &readLoad{stopped: make(chan struct{})}
	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: readProductWorkers}}
	t.Cleanup(client.CloseIdleConnections)
	a := api{base: s.base, client: client}
	var sent atomic.Int64
	for w := range readProductWorkers {
		l.done.Go(func() {
			for i := w; ; i += readProductWorkers {
				select {
				case <-l.stopped:
					return
				default:
				}
				if n > 0 && sent.Add(1) > n {
					return
				}
				r, err := a.send(t.Context(), http.MethodGet, "/api/v1/products/"+ids[i%len(ids)], "", nil)
				if err := expectReply(r, err, http.StatusOK, nil); err != nil {
					l.errs.add(err)
					l.stop()
					return
				}
				l.ok.Add(1)
			}
		})
	}
	return l
}

func (l *readLoad) stop() { l.once.Do(func() { close(l.stopped) }) }

// wait waits for the readers to end and requires every read succeeded.
func (l *readLoad) wait(t *testing.T) {
	t.Helper()
	l.done.Wait()
	require.NoError(t, l.errs.err(), "every read is answered 200")
}

// readTargets reads <data>/targets.json: each listed instance's address.
func readTargets(t *testing.T, dataDir string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "targets.json"))
	require.NoError(t, err)
	var groups []struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	require.NoError(t, json.Unmarshal(b, &groups), "targets.json: %s", b)
	out := map[string]string{}
	for _, g := range groups {
		require.Len(t, g.Targets, 1, "one target per instance: %s", b)
		require.NotEmpty(t, g.Labels["service"])
		out[g.Labels["instance"]] = g.Targets[0]
	}
	return out
}

func catalogTargets(all map[string]string) map[string]string {
	out := map[string]string{}
	for inst, addr := range all {
		if strings.HasPrefix(inst, "catalog-") {
			out[inst] = addr
		}
	}
	return out
}

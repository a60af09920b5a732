package registry_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/mercato-dev/mercato/internal/platform/registry"
)

// waitSet receives sets from ch until one has exactly the wanted IDs, and
// returns it; it fails the test when the deadline passes or ch closes first.
func waitSet(t *testing.T, ch <-chan []registry.Instance, timeout time.Duration, ids ...string) []registry.Instance {
	t.Helper()
	slices.Sort(ids)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var last []string
	for {
		select {
		case set, ok := <-ch:
			require.True(t, ok, "watch closed while waiting for %v (last %v)", ids, last)
			last = idsOf(set)
			if slices.Equal(last, ids) {
				return set
			}
		case <-deadline.C:
			require.FailNow(t, "watch did not show the wanted set", "want %v, last %v", ids, last)
		}
	}
}

func idsOf(set []registry.Instance) []string {
	ids := make([]string, 0, len(set))
	for _, inst := range set {
		ids = append(ids, inst.ID)
	}
	return ids
}

// eventually polls cond every 20ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	require.Eventually(t, cond, timeout, 20*time.Millisecond, append([]any{msg}, args...)...)
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// testEtcd is a single-member etcd in the test process that can be stopped
// and started again on the same ports and data directory.
type testEtcd struct {
	t                  *testing.T
	dir                string
	clientAddr, peerAd string
	mu                 sync.Mutex
	e                  *embed.Etcd
}

func startEtcd(t *testing.T) *testEtcd {
	t.Helper()
	te := &testEtcd{t: t, dir: t.TempDir(), clientAddr: freePort(t), peerAd: freePort(t)}
	te.start()
	t.Cleanup(te.stop)
	return te
}

func (te *testEtcd) endpoint() string { return "http://" + te.clientAddr }

func (te *testEtcd) start() {
	te.t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = "registry-test"
	cfg.Dir = te.dir
	cu := url.URL{Scheme: "http", Host: te.clientAddr}
	pu := url.URL{Scheme: "http", Host: te.peerAd}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// Short election ticks keep etcd's minimum lease TTL at a second.
	cfg.TickMs, cfg.ElectionMs = 10, 100
	cfg.UnsafeNoFsync = true
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	e, err := embed.StartEtcd(cfg)
	require.NoError(te.t, err)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		require.FailNow(te.t, "etcd did not become ready")
	}
	te.mu.Lock()
	te.e = e
	te.mu.Unlock()
}

func (te *testEtcd) stop() {
	te.mu.Lock()
	e := te.e
	te.e = nil
	te.mu.Unlock()
	if e != nil {
		e.Close()
	}
}

func openEtcd(t *testing.T, endpoint string, ttl time.Duration, logger *slog.Logger) registry.Registry {
	t.Helper()
	reg, err := registry.Open(registry.Config{
		Kind: registry.KindEtcd,
		Etcd: registry.EtcdConfig{Endpoints: []string{endpoint}, TTL: ttl, DialTimeout: time.Second},
	}, logger)
	require.NoError(t, err)
	t.Cleanup(func() { _ = reg.Close() })
	return reg
}

// proxy forwards TCP connections to a target until cut: then it drops every
// connection and refuses new ones until restored, as a network partition
// between one client and its server would.
type proxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]struct{}
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{l: l, target: target, conns: make(map[net.Conn]struct{})}
	go p.serve()
	t.Cleanup(func() { _ = l.Close(); p.setCut(true) })
	return p
}

func (p *proxy) endpoint() string { return "http://" + p.l.Addr().String() }

func (p *proxy) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

func (p *proxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return false
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *proxy) forward(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		_ = c.Close()
		return
	}
	if !p.track(c, up) {
		_ = c.Close()
		_ = up.Close()
		return
	}
	go func() { _, _ = io.Copy(up, c); _ = up.Close() }()
	_, _ = io.Copy(c, up)
	_ = c.Close()
}

func (p *proxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			_ = c.Close()
		}
		clear(p.conns)
	}
}

// dnsServer answers A and SRV queries on loopback from records the test
// changes as it goes; every other name does not exist.
type dnsServer struct {
	addr    string
	queries atomic.Int64
	mu      sync.Mutex
	a       map[string][]string  // name -> IPv4 addresses
	srv     map[string][]dns.SRV // name -> records
	server  *dns.Server
}

func startDNS(t *testing.T) *dnsServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	d := &dnsServer{addr: pc.LocalAddr().String(), a: map[string][]string{}, srv: map[string][]dns.SRV{}}
	started := make(chan struct{})
	d.server = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(d.answer), NotifyStartedFunc: func() { close(started) }}
	go func() { _ = d.server.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = d.server.Shutdown() })
	return d
}

func (d *dnsServer) setA(name string, ips ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(ips) == 0 {
		delete(d.a, name)
		return
	}
	d.a[name] = ips
}

func (d *dnsServer) setSRV(name string, records ...dns.SRV) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.srv[name] = records
}

func (d *dnsServer) answer(w dns.ResponseWriter, req *dns.Msg) {
	d.queries.Add(1)
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	d.mu.Lock()
	defer d.mu.Unlock()
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	ips, hasA := d.a[name]
	srvs, hasSRV := d.srv[name]
	hdr := func(typ uint16) dns.RR_Header {
		return dns.RR_Header{Name: q.Name, Rrtype: typ, Class: dns.ClassINET, Ttl: 0}
	}
	switch {
	case !hasA && !hasSRV:
		m.Rcode = dns.RcodeNameError
	case q.Qtype == dns.TypeA:
		for _, ip := range ips {
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr(dns.TypeA), A: net.ParseIP(ip)})
		}
	case q.Qtype == dns.TypeSRV:
		for _, s := range srvs {
			rec := s
			rec.Hdr = hdr(dns.TypeSRV)
			m.Answer = append(m.Answer, &rec)
		}
	}
	_ = w.WriteMsg(m)
}

// healthServer is a gRPC server with the standard health service that
// counts the calls it answers.
type healthServer struct {
	addr  string
	calls atomic.Int64
	srv   *grpc.Server
}

func startHealthServer(t *testing.T, listenAddr string) *healthServer {
	t.Helper()
	l, err := net.Listen("tcp", listenAddr)
	require.NoError(t, err)
	h := &healthServer{addr: l.Addr().String()}
	h.srv = grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
		h.calls.Add(1)
		return next(ctx, req)
	}))
	healthpb.RegisterHealthServer(h.srv, health.NewServer())
	go func() { _ = h.srv.Serve(l) }()
	t.Cleanup(h.srv.Stop)
	return h
}

const roundRobin = `{"loadBalancingConfig":[{"round_robin":{}}]}`

func dialThrough(t *testing.T, reg registry.Registry, service string) healthpb.HealthClient {
	t.Helper()
	conn, err := grpc.NewClient(registry.Target(service),
		registry.WithResolver(reg, nil),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(roundRobin))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return healthpb.NewHealthClient(conn)
}

// check makes one call and returns the address that answered.
func check(ctx context.Context, client healthpb.HealthClient) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var p peer.Peer
	if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p)); err != nil {
		return "", err
	}
	if p.Addr == nil {
		return "", errors.New("no peer")
	}
	return p.Addr.String(), nil
}

// logRecorder is a slog handler keeping the messages logged, so a test can
// tell which path the code took.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

func (l *logRecorder) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

package registry

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mercato-dev/mercato/internal/platform/config"
)

// The backends Config.Kind names.
const (
	KindStatic = "static"
	KindDNS    = "dns"
	KindEtcd   = "etcd"
)

// Config chooses a backend and configures it. Only the chosen kind's
// section is read and validated.
type Config struct {
	// Kind is KindStatic, KindDNS or KindEtcd.
	Kind string
	// Static maps a service to the gRPC addresses (host:port) of its
	// instances.
	Static map[string][]string
	DNS    DNSConfig
	Etcd   EtcdConfig
}

// DNSConfig names, per service, the DNS name whose records are its
// instances. Write names fully qualified with a trailing dot
// ("catalog.shop.svc.cluster.local.") so a resolver's search domains are
// not tried first.
type DNSConfig struct {
	// Hosts maps a service to host:port: every A and AAAA record of host is
	// an instance serving on port (a Kubernetes headless service and the
	// service's gRPC port).
	Hosts map[string]string
	// SRV maps a service to an SRV name (e.g.
	// "_grpc._tcp.catalog.shop.svc.cluster.local."): every target's
	// addresses, on the record's port, are instances. Priority and weight
	// are not used; round-robin balancing treats all alike.
	SRV map[string]string
	// Interval between lookups of a watched name. Default 5s.
	Interval time.Duration
	// Server is the host:port of the DNS server to ask; empty uses the
	// system's resolver configuration.
	Server string
}

// EtcdConfig configures the etcd backend: every instance is a key
// Prefix+service+"/"+id holding the instance as JSON, attached to a lease
// the registering process keeps alive.
type EtcdConfig struct {
	// Endpoints are the etcd client URLs (http://host:2379) or host:port.
	// TLS and authentication to etcd are not supported yet.
	Endpoints []string
	// Prefix under which services are kept. Default "/mercato/services/".
	Prefix string
	// TTL of an instance's lease, in whole seconds: how long an instance
	// whose process died stays visible. Default 10s. etcd raises a TTL
	// below its own minimum (about 1.5 election timeouts).
	TTL time.Duration
	// DialTimeout bounds one attempt to reach etcd (a lease grant, the
	// first read of a watch). Default 5s.
	DialTimeout time.Duration
}

// WithDefaults returns c with every unset field of the chosen kind filled.
func (c Config) WithDefaults() Config {
	if c.DNS.Interval == 0 {
		c.DNS.Interval = 5 * time.Second
	}
	if c.Etcd.Prefix == "" {
		c.Etcd.Prefix = "/mercato/services/"
	}
	if !strings.HasSuffix(c.Etcd.Prefix, "/") {
		c.Etcd.Prefix += "/"
	}
	if c.Etcd.TTL == 0 {
		c.Etcd.TTL = 10 * time.Second
	}
	if c.Etcd.DialTimeout == 0 {
		c.Etcd.DialTimeout = 5 * time.Second
	}
	return c
}

// Validate reports every problem with the chosen kind's configuration as a
// *config.Error.
func (c Config) Validate() error {
	var p config.Problems
	switch c.Kind {
	case KindStatic:
		c.validateStatic(&p)
	case KindDNS:
		c.validateDNS(&p)
	case KindEtcd:
		c.validateEtcd(&p)
	case "":
		p.Add(true, "registry kind is not set (want %s, %s or %s)", KindStatic, KindDNS, KindEtcd)
	default:
		p.Add(true, "registry kind %q is unknown (want %s, %s or %s)", c.Kind, KindStatic, KindDNS, KindEtcd)
	}
	return p.Err()
}

func (c Config) validateStatic(p *config.Problems) {
	p.Add(len(c.Static) == 0, "static registry names no service")
	for _, svc := range sortedKeys(c.Static) {
		addrs := c.Static[svc]
		p.Add(!validServiceName(svc), "static registry: service name %q is empty or contains '/'", svc)
		p.Add(len(addrs) == 0, "static registry: service %q has no address", svc)
		for _, a := range addrs {
			p.Add(!validHostPort(a), "static registry: service %q: address %q is not host:port", svc, a)
		}
	}
}

func (c Config) validateDNS(p *config.Problems) {
	d := c.DNS
	p.Add(len(d.Hosts)+len(d.SRV) == 0, "dns registry names no service")
	for _, svc := range sortedKeys(d.Hosts) {
		p.Add(!validServiceName(svc), "dns registry: service name %q is empty or contains '/'", svc)
		p.Add(!validHostPort(d.Hosts[svc]), "dns registry: service %q: %q is not host:port", svc, d.Hosts[svc])
		_, both := d.SRV[svc]
		p.Add(both, "dns registry: service %q has both a host and an SRV name", svc)
	}
	for _, svc := range sortedKeys(d.SRV) {
		p.Add(!validServiceName(svc), "dns registry: service name %q is empty or contains '/'", svc)
		p.Add(strings.TrimSpace(d.SRV[svc]) == "" || strings.Contains(d.SRV[svc], ":"),
			"dns registry: service %q: SRV name %q must be a DNS name without a port", svc, d.SRV[svc])
	}
	p.Add(d.Interval < 0, "dns registry: interval must not be negative")
	p.Add(d.Server != "" && !validHostPort(d.Server), "dns registry: server %q is not host:port", d.Server)
}

func (c Config) validateEtcd(p *config.Problems) {
	e := c.Etcd
	p.Add(len(e.Endpoints) == 0, "etcd registry has no endpoints")
	for _, ep := range e.Endpoints {
		p.Add(!validEndpoint(ep), "etcd registry: endpoint %q is not http://host:port or host:port (TLS is not supported)", ep)
	}
	p.Add(e.Prefix != "" && !strings.HasPrefix(e.Prefix, "/"), "etcd registry: prefix %q must start with '/'", e.Prefix)
	p.Add(e.TTL != 0 && (e.TTL < time.Second || e.TTL%time.Second != 0), "etcd registry: lease TTL %s must be whole seconds, at least 1s", e.TTL)
	p.Add(e.DialTimeout < 0, "etcd registry: dial timeout must not be negative")
}

// Open validates cfg and returns its backend. It does not wait for the
// backend to answer: an unreachable etcd or DNS server shows in Register and
// Watch, which a process retries or gives up on as it sees fit. logger
// receives what the registry retries on its own; nil discards it.
func Open(cfg Config, logger *slog.Logger) (Registry, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	cfg = cfg.WithDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("registry", cfg.Kind)
	switch cfg.Kind {
	case KindStatic:
		return newStatic(cfg.Static), nil
	case KindDNS:
		return newDNS(cfg.DNS, logger), nil
	default:
		return newEtcd(cfg.Etcd, logger)
	}
}

func validServiceName(s string) bool { return s != "" && !strings.Contains(s, "/") }

func validHostPort(a string) bool {
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n > 0 && n < 65536
}

func validEndpoint(ep string) bool {
	if !strings.Contains(ep, "://") {
		return validHostPort(ep)
	}
	u, err := url.Parse(ep)
	return err == nil && u.Scheme == "http" && validHostPort(u.Host) && (u.Path == "" || u.Path == "/")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

package launcher

import (
	"crypto/rand"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/system"
)

// plan is everything decided before the children start: enough to write
// each one's environment.
type plan struct {
	cfg     Config
	natsURL string
	// etcdURL is the registry's etcd, with RegistryEtcd.
	etcdURL string
	// addrs are where each service's instances listen, in instance order.
	addrs         map[string][]ServiceAddrs
	adminPassword string
	// serviceSecret lets the services obtain service tokens from identity.
	serviceSecret string
	// pageTokenKeys sign each service's list page tokens; one per service
	// so a token from one cannot be replayed to another.
	pageTokenKeys map[string]string
}

// newPlan makes the secrets of one run: random and held in memory only, as
// nothing issued with them needs to outlive the run.
func newPlan(cfg Config, natsURL string, addrs map[string][]ServiceAddrs, adminPassword string) plan {
	p := plan{
		cfg: cfg, natsURL: natsURL, addrs: addrs, adminPassword: adminPassword,
		serviceSecret: rand.Text(),
		pageTokenKeys: map[string]string{},
	}
	for _, name := range cfg.Services {
		p.pageTokenKeys[name] = rand.Text()
	}
	return p
}

// ChildEnv returns the environment `mercato up` gives service in a run
// with these addresses and secrets, cfg.Env being the inherited one. Test
// harnesses that start the services themselves (to kill and restart one)
// use it, so their services see exactly what `mercato up` gives; the page
// token key is derived from serviceSecret, so it survives a restart.
func ChildEnv(cfg Config, natsURL string, addrs map[string]ServiceAddrs, adminPassword, serviceSecret, service string) ([]string, error) {
	p := plan{
		cfg: cfg, natsURL: natsURL, addrs: map[string][]ServiceAddrs{}, adminPassword: adminPassword, serviceSecret: serviceSecret,
		pageTokenKeys: map[string]string{service: service + "-page-token-key-" + serviceSecret},
	}
	for name, a := range addrs {
		p.addrs[name] = []ServiceAddrs{a}
	}
	return p.childEnv(service)
}

// databaseURL is where service keeps its data: a SQLite file in the data
// directory, or its own database on the PostgreSQL server.
func (p plan) databaseURL(service string) (string, error) {
	if p.cfg.PostgresURL == "" {
		return filepath.Join(p.cfg.DataDir, service+".db"), nil
	}
	u, err := db.PostgresURLFor(p.cfg.PostgresURL, p.cfg.DBPrefix+service)
	if err != nil {
		return "", fmt.Errorf("database URL for %s: %w", service, err)
	}
	return u, nil
}

// childEnv is service's environment: the inherited one with the launcher's
// variables replacing any of the same name. A service learns where each
// service it calls listens (MERCATO_<SERVICE>_ADDR), as the table of
// services says. Variables meant for one service only (the admin password
// above all) are removed from the others.
func (p plan) childEnv(service string) ([]string, error) {
	return p.instanceEnv(service, 0)
}

// instanceEnv is the environment of the instance-th instance (from 0) of
// service. Every instance of a service shares its database, its page
// token key and its secrets; each has its own ports and instance id
// (MERCATO_INSTANCE_ID, which names it in saga leases). A neighbour with
// several instances is given as a comma-separated list of their addresses.
func (p plan) instanceEnv(service string, instance int) ([]string, error) {
	entry, ok := system.Lookup(service)
	if !ok {
		return nil, fmt.Errorf("unknown service %q", service)
	}
	if instance < 0 || instance >= len(p.addrs[service]) {
		return nil, fmt.Errorf("%s has no instance %d", service, instance+1)
	}
	own := p.addrs[service][instance]
	vars := [][2]string{
		{"MERCATO_GRPC_ADDR", own.GRPC},
		{"MERCATO_HTTP_ADDR", own.HTTP},
		{"NATS_URL", p.natsURL},
		{"JWKS_URL", "http://" + p.addrs[Identity][0].HTTP + "/.well-known/jwks.json"},
		{"MERCATO_INSTANCE_ID", service + "-" + strconv.Itoa(instance+1)},
		{"MERCATO_REGISTRY", p.cfg.Registry},
		{"MERCATO_SERVICE_SECRET", p.serviceSecret},
		{"MERCATO_PAGE_TOKEN_KEY", p.pageTokenKeys[service]},
	}
	for _, callee := range entry.Calls {
		if addrs, running := p.addrs[callee]; running {
			targets := make([]string, len(addrs))
			for i, a := range addrs {
				targets[i] = a.GRPC
			}
			vars = append(vars, [2]string{system.AddrVar(callee), strings.Join(targets, ",")})
		}
	}
	if p.etcdURL != "" {
		vars = append(vars, [2]string{"MERCATO_ETCD_ENDPOINTS", p.etcdURL})
	}
	if entry.Database {
		dbURL, err := p.databaseURL(service)
		if err != nil {
			return nil, err
		}
		vars = append(vars, [2]string{"DATABASE_URL", dbURL})
	}
	if service == Identity {
		vars = append(vars,
			[2]string{"MERCATO_ADMIN_EMAIL", p.cfg.AdminEmail},
			[2]string{"MERCATO_ADMIN_PASSWORD", p.adminPassword})
	}
	if service == Gateway {
		vars = append(vars, [2]string{"MERCATO_ADDR", p.cfg.Addr})
	}

	drop := map[string]bool{"DATABASE_URL": true, "MERCATO_ADMIN_EMAIL": true, "MERCATO_ADMIN_PASSWORD": true}
	for _, kv := range vars {
		drop[kv[0]] = true
	}
	env := slices.DeleteFunc(slices.Clone(p.cfg.Env), func(entry string) bool {
		key, _, _ := strings.Cut(entry, "=")
		return drop[key]
	})
	for _, kv := range vars {
		env = append(env, kv[0]+"="+kv[1])
	}
	return env, nil
}

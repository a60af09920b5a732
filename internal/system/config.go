package system

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/mercato-dev/mercato/internal/cart"
	"github.com/mercato-dev/mercato/internal/catalog"
	"github.com/mercato-dev/mercato/internal/gateway"
	"github.com/mercato-dev/mercato/internal/identity"
	"github.com/mercato-dev/mercato/internal/inventory"
	"github.com/mercato-dev/mercato/internal/notifications"
	"github.com/mercato-dev/mercato/internal/orders"
	"github.com/mercato-dev/mercato/internal/payments"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/config"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/events"
	"github.com/mercato-dev/mercato/internal/platform/registry"
	"github.com/mercato-dev/mercato/internal/platform/server"
)

// common are the settings every service reads. Defaults suit a container:
// listen on all interfaces, the data file under ./data, NATS and identity
// reachable by their Kubernetes service names.
//
//	MERCATO_GRPC_ADDR             gRPC listen address                  (:9090)
//	MERCATO_HTTP_ADDR             admin HTTP listen address            (:8081)
//	MERCATO_SHUTDOWN_TIMEOUT      graceful drain deadline              (15s)
//	DATABASE_URL                  postgres://… or a SQLite file        (./data/<service>.db)
//	MERCATO_DB_MAX_CONNS          database pool size                   (engine default)
//	NATS_URL                      NATS server(s)                       (nats://nats:4222)
//	MERCATO_NATS_STREAM_REPLICAS  JetStream stream replicas, 1..5      (1)
//	JWKS_URL                      identity's public keys               (http://identity:8081/.well-known/jwks.json)
type common struct {
	Server server.Config
	DB     db.Config
	Events events.Config
	Keys   auth.KeysConfig
}

func readCommon(env *config.Env, service string) common {
	return common{
		Server: server.Config{
			GRPCAddr:        env.String("MERCATO_GRPC_ADDR", ":9090"),
			HTTPAddr:        env.String("MERCATO_HTTP_ADDR", ":8081"),
			ShutdownTimeout: env.Duration("MERCATO_SHUTDOWN_TIMEOUT", 15*time.Second),
			Registry:        readRegistry(env, service),
			InstanceID:      env.String("MERCATO_INSTANCE_ID", ""),
			AdvertiseHost:   env.String("MERCATO_ADVERTISE_HOST", ""),
		},
		DB: readDB(env, service),
		Events: events.Config{
			URL:            NATSURL(env),
			StreamReplicas: env.Int("MERCATO_NATS_STREAM_REPLICAS", 1),
			Streams:        Streams(),
		},
		Keys: auth.KeysConfig{JWKSURL: env.String("JWKS_URL", "http://identity:8081/.well-known/jwks.json")},
	}
}

// readRegistry reads how the instance is found and finds the services it
// calls:
//
//	MERCATO_REGISTRY         static, dns or etcd                                (static)
//	MERCATO_ETCD_ENDPOINTS   etcd client URLs, comma-separated (etcd: required)
//	MERCATO_<SERVICE>_ADDR   static: the gRPC address of a service it calls, or
//	                         the addresses of its instances, comma-separated;
//	                         dns: host:port of its headless service (each A/AAAA
//	                         record an instance); a gRPC target URI such as
//	                         dns:///name:port is used as it is, with any kind    (<service>:9090)
//
// With etcd every instance registers itself once ready (MERCATO_INSTANCE_ID
// names it, MERCATO_ADVERTISE_HOST is where it is reached) and deregisters
// first thing on drain.
func readRegistry(env *config.Env, service string) registry.Config {
	cfg := registry.Config{Kind: env.String("MERCATO_REGISTRY", registry.KindStatic)}
	entry, _ := Lookup(service)
	for _, callee := range entry.Calls {
		addr := env.String(AddrVar(callee), defaultTarget(callee))
		if isTargetURI(addr) {
			continue
		}
		switch cfg.Kind {
		case registry.KindStatic:
			if cfg.Static == nil {
				cfg.Static = map[string][]string{}
			}
			for _, a := range strings.Split(addr, ",") {
				cfg.Static[callee] = append(cfg.Static[callee], strings.TrimSpace(a))
			}
		case registry.KindDNS:
			if cfg.DNS.Hosts == nil {
				cfg.DNS.Hosts = map[string]string{}
			}
			cfg.DNS.Hosts[callee] = addr
		}
	}
	if cfg.Kind == registry.KindStatic && len(cfg.Static) == 0 {
		// Calls no one by address, registers nowhere: nothing to open.
		return registry.Config{}
	}
	if eps := env.String("MERCATO_ETCD_ENDPOINTS", ""); eps != "" {
		for _, ep := range strings.Split(eps, ",") {
			if ep = strings.TrimSpace(ep); ep != "" {
				cfg.Etcd.Endpoints = append(cfg.Etcd.Endpoints, ep)
			}
		}
	}
	return cfg
}

// isTargetURI tells a gRPC target URI (dns:///name:port) from addresses.
func isTargetURI(addr string) bool { return strings.Contains(addr, ":///") }

// target is how a client names service: the registry's target, or a
// gRPC target URI given as it is (see readRegistry).
func target(env *config.Env, service string) string {
	addr := env.String(AddrVar(service), defaultTarget(service))
	if isTargetURI(addr) {
		return addr
	}
	return registry.Target(service)
}

// NATSURL reads the NATS server(s) every process connects to.
func NATSURL(env *config.Env) string { return env.String("NATS_URL", "nats://nats:4222") }

// DBConfig reads the database configuration of the service called name,
// as its Serve and Migrate do: for tools that work on a service's data. A
// problem with it, an unknown service or one without a database is a
// *config.Error.
func DBConfig(env *config.Env, name string) (db.Config, error) {
	svc, ok := Lookup(name)
	if !ok {
		return db.Config{}, config.Join(fmt.Errorf("unknown service %q", name))
	}
	if !svc.Database {
		return db.Config{}, config.Join(fmt.Errorf("%s keeps no database", name))
	}
	cfg := readDB(env, name)
	if err := config.Join(env.Err(), cfg.Validate()); err != nil {
		return db.Config{}, fmt.Errorf("%s configuration: %w", name, err)
	}
	return cfg, nil
}

func readDB(env *config.Env, service string) db.Config {
	return db.Config{
		URL:          env.String("DATABASE_URL", filepath.Join("data", service+".db")),
		MaxOpenConns: env.Int("MERCATO_DB_MAX_CONNS", 0),
	}
}

// runner is a built service.
type runner interface {
	Run(ctx context.Context) error
}

// serve is the Serve of a service whose configuration read returns and
// build turns into a running service: the same three steps for every one.
func serve[C any, S runner](read func(*config.Env) (C, error), build func(context.Context, C, *slog.Logger) (S, error)) func(context.Context, *config.Env, Runtime) error {
	return func(ctx context.Context, env *config.Env, rt Runtime) error {
		cfg, err := read(env)
		if err != nil {
			return err
		}
		svc, err := build(ctx, cfg, rt.Logger)
		if err != nil {
			return err
		}
		return svc.Run(ctx)
	}
}

// migrate is the Migrate of a service whose migrations apply takes only
// its database configuration.
func migrate(service string, apply func(context.Context, db.Config) error) func(context.Context, *config.Env) error {
	return func(ctx context.Context, env *config.Env) error {
		cfg := readDB(env, service)
		if err := config.Join(env.Err(), cfg.Validate()); err != nil {
			return fmt.Errorf("%s configuration: %w", service, err)
		}
		return apply(ctx, cfg)
	}
}

// readIdentity reads identity's configuration. Besides the common settings
// (JWKS_URL aside: identity verifies with its own keys) it reads:
//
//	MERCATO_ADMIN_EMAIL            bootstrap admin account email           (unset: none)
//	MERCATO_ADMIN_PASSWORD         bootstrap admin password, 8-128 chars   (unset: none)
//	MERCATO_ACCESS_TOKEN_TTL       access token lifetime                   (15m)
//	MERCATO_REFRESH_TOKEN_TTL      refresh token lifetime                  (720h)
//	MERCATO_KEY_ROTATION           how long a signing key signs            (24h)
//	MERCATO_KEY_PUBLISH_LEAD       how long a key is published before use  (10m)
//	MERCATO_MAX_CONCURRENT_HASHES  argon2id hashes at once (19 MiB each)   (4)
//	MERCATO_LOGIN_RATE_PER_MIN     login attempts per email per minute     (5; 0 disables)
//	MERCATO_LOGIN_IP_RATE_PER_MIN  login attempts per client IP per minute (20; 0 disables)
//	MERCATO_SERVICE_SECRET         secret services exchange for service tokens (unset: off)
func readIdentity(env *config.Env) (identity.Config, error) {
	c := readCommon(env, identity.Name)
	cfg := identity.Config{
		Server:               c.Server,
		DB:                   c.DB,
		Events:               c.Events,
		AdminEmail:           env.String("MERCATO_ADMIN_EMAIL", ""),
		AdminPassword:        env.String("MERCATO_ADMIN_PASSWORD", ""),
		AccessTokenTTL:       env.Duration("MERCATO_ACCESS_TOKEN_TTL", identity.DefaultAccessTokenTTL),
		RefreshTokenTTL:      env.Duration("MERCATO_REFRESH_TOKEN_TTL", identity.DefaultRefreshTokenTTL),
		KeyRotationInterval:  env.Duration("MERCATO_KEY_ROTATION", identity.DefaultKeyRotationInterval),
		KeyPublishLead:       env.Duration("MERCATO_KEY_PUBLISH_LEAD", identity.DefaultKeyPublishLead),
		MaxConcurrentHashes:  env.Int("MERCATO_MAX_CONCURRENT_HASHES", identity.DefaultMaxConcurrentHashes),
		LoginRatePerMinute:   env.Int("MERCATO_LOGIN_RATE_PER_MIN", identity.DefaultLoginRatePerMinute),
		LoginIPRatePerMinute: env.Int("MERCATO_LOGIN_IP_RATE_PER_MIN", identity.DefaultLoginIPRatePerMinute),
		ServiceSecret:        env.String("MERCATO_SERVICE_SECRET", ""),
	}
	return cfg, checked(identity.Name, env, cfg)
}

// readCatalog reads the catalog's configuration. Besides the common
// settings it reads:
//
//	MERCATO_PAGE_TOKEN_KEY         secret signing list page tokens, at least
//	                               16 bytes; set it, the same on every
//	                               replica, when running more than one   (random per process)
//	REDIS_URL                      cache product reads in Redis, shared
//	                               by every replica                      (unset: no cache)
//	MERCATO_CATALOG_CACHE_TTL      how long a product stays cached, 1s to
//	                               24h: the most a lost invalidation can
//	                               leave it stale                        (60s)
//	MERCATO_CATALOG_CACHE_TIMEOUT  bound of every Redis call: what a Redis
//	                               outage adds to a read, once a second  (100ms)
//
// The cache is invalidated by every write once it commits and by the
// product.* events, so every replica sees a change at once; a Redis outage
// only sends the reads to the database.
func readCatalog(env *config.Env) (catalog.Config, error) {
	c := readCommon(env, catalog.Name)
	cfg := catalog.Config{
		Server:       c.Server,
		DB:           c.DB,
		Events:       c.Events,
		Keys:         c.Keys,
		PageTokenKey: env.String("MERCATO_PAGE_TOKEN_KEY", ""),
		Cache: catalog.CacheConfig{
			RedisURL: env.String("REDIS_URL", ""),
			TTL:      env.Duration("MERCATO_CATALOG_CACHE_TTL", catalog.DefaultCacheTTL),
			Timeout:  env.Duration("MERCATO_CATALOG_CACHE_TIMEOUT", catalog.DefaultCacheTimeout),
		},
	}
	return cfg, checked(catalog.Name, env, cfg)
}

// readInventory reads the inventory's configuration. Besides the common
// settings (it publishes no events, so NATS is not read) it reads:
//
//	MERCATO_RESERVATION_TTL    how long an uncommitted reservation holds stock (15m)
//	MERCATO_RESERVATION_SWEEP  how often expired reservations are released     (5s)
func readInventory(env *config.Env) (inventory.Config, error) {
	c := readCommon(env, inventory.Name)
	cfg := inventory.Config{
		Server:              c.Server,
		DB:                  c.DB,
		Keys:                c.Keys,
		ReservationTTL:      env.Duration("MERCATO_RESERVATION_TTL", inventory.DefaultReservationTTL),
		ExpirySweepInterval: env.Duration("MERCATO_RESERVATION_SWEEP", inventory.DefaultExpirySweepInterval),
	}
	return cfg, checked(inventory.Name, env, cfg)
}

// readCart reads the cart's configuration. Besides the common settings it
// reads:
//
//	REDIS_URL             keep carts in Redis instead of the database  (unset: SQL)
//	MERCATO_CATALOG_ADDR  catalog's gRPC target                        (catalog:9090)
func readCart(env *config.Env) (cart.Config, error) {
	c := readCommon(env, cart.Name)
	cfg := cart.Config{
		Server:      c.Server,
		DB:          c.DB,
		Events:      c.Events,
		Keys:        c.Keys,
		RedisURL:    env.String("REDIS_URL", ""),
		CatalogAddr: target(env, catalog.Name),
	}
	return cfg, checked(cart.Name, env, cfg)
}

// readOrders reads the orders configuration. Besides the common settings
// it reads:
//
//	MERCATO_CATALOG_ADDR         catalog gRPC target                         (catalog:9090)
//	MERCATO_CART_ADDR            cart gRPC target                            (cart:9090)
//	MERCATO_INVENTORY_ADDR       inventory gRPC target                       (inventory:9090)
//	MERCATO_PAYMENTS_ADDR        payments gRPC target                        (payments:9090)
//	MERCATO_IDENTITY_ADDR        identity gRPC target, for the service token (identity:9090)
//	MERCATO_SERVICE_SECRET       orders' client secret at identity           (required)
//	MERCATO_SAGA_DEADLINE        checkout time before the stock commit       (30s)
//	MERCATO_SAGA_WORKERS         orders the saga advances at once            (32)
//	MERCATO_SAGA_POLL_INTERVAL   how often the saga looks for due retries    (1s)
//	MERCATO_SAGA_STUCK_AFTER     time without progress before an order is    (2m)
//	                             logged, counted and listed as stuck
//	MERCATO_INSTANCE_ID          this replica's name in saga leases          (host name)
//	MERCATO_IDEMPOTENCY_KEY_TTL  how long an Idempotency-Key is remembered   (24h)
//	MERCATO_PAGE_TOKEN_KEY       HMAC key for list page tokens, >= 16 bytes  (random per process)
//	MERCATO_FAULT_CRASH_AFTER    test-only: SIGKILL the process right after  (unset: off)
//	                             the append of this event type commits, e.g.
//	                             "StockReserved"; "before:StockReserved"
//	                             kills it after the inventory call instead
//
// Targets are host:port, or dns:///name:port to balance over a headless
// Kubernetes service.
func readOrders(env *config.Env) (orders.Config, error) {
	c := readCommon(env, orders.Name)
	cfg := orders.Config{
		Server:            c.Server,
		DB:                c.DB,
		Events:            c.Events,
		Keys:              c.Keys,
		CatalogAddr:       target(env, catalog.Name),
		CartAddr:          target(env, cart.Name),
		InventoryAddr:     target(env, inventory.Name),
		PaymentsAddr:      target(env, payments.Name),
		IdentityAddr:      target(env, identity.Name),
		ServiceSecret:     env.String("MERCATO_SERVICE_SECRET", ""),
		SagaDeadline:      env.Duration("MERCATO_SAGA_DEADLINE", orders.DefaultSagaDeadline),
		SagaWorkers:       env.Int("MERCATO_SAGA_WORKERS", orders.DefaultSagaWorkers),
		SagaPollInterval:  env.Duration("MERCATO_SAGA_POLL_INTERVAL", 0),
		SagaStuckAfter:    env.Duration("MERCATO_SAGA_STUCK_AFTER", orders.DefaultSagaStuckAfter),
		InstanceID:        env.String("MERCATO_INSTANCE_ID", ""),
		PageTokenKey:      env.String("MERCATO_PAGE_TOKEN_KEY", ""),
		IdempotencyKeyTTL: env.Duration("MERCATO_IDEMPOTENCY_KEY_TTL", orders.DefaultIdempotencyKeyTTL),
		CrashAfter:        env.String("MERCATO_FAULT_CRASH_AFTER", ""),
	}
	return cfg, checked(orders.Name, env, cfg)
}

// readPayments reads the payments configuration. Besides the common
// settings it reads the fake provider's fault knobs:
//
//	MERCATO_PAYMENTS_LATENCY       latency added to every provider call, 0..30s  (0s)
//	MERCATO_PAYMENTS_FAILURE_RATE  share of provider calls failing, 0..1         (0)
//	MERCATO_PAYMENTS_SEED          seed of the failure draws                     (random)
func readPayments(env *config.Env) (payments.Config, error) {
	c := readCommon(env, payments.Name)
	seed := env.Int("MERCATO_PAYMENTS_SEED", 0)
	cfg := payments.Config{
		Server:              c.Server,
		DB:                  c.DB,
		Events:              c.Events,
		Keys:                c.Keys,
		ProviderLatency:     env.Duration("MERCATO_PAYMENTS_LATENCY", 0),
		ProviderFailureRate: env.Float("MERCATO_PAYMENTS_FAILURE_RATE", 0),
		ProviderSeed:        uint64(max(seed, 0)),
	}
	var seedErr error
	if seed < 0 {
		seedErr = errors.New("MERCATO_PAYMENTS_SEED must not be negative")
	}
	return cfg, checked(payments.Name, env, cfg, seedErr)
}

// readNotifications reads the notifications configuration. Besides the
// common settings it reads:
//
//	MERCATO_NOTIFICATIONS_FILE  append every notification to this file as JSON lines (unset: log)
//	MERCATO_PAGE_TOKEN_KEY      HMAC key for list page tokens, >= 16 bytes           (random per process)
func readNotifications(env *config.Env) (notifications.Config, error) {
	c := readCommon(env, notifications.Name)
	cfg := notifications.Config{
		Server:       c.Server,
		DB:           c.DB,
		Events:       c.Events,
		Keys:         c.Keys,
		SinkFile:     env.String("MERCATO_NOTIFICATIONS_FILE", ""),
		PageTokenKey: env.String("MERCATO_PAGE_TOKEN_KEY", ""),
	}
	return cfg, checked(notifications.Name, env, cfg)
}

// readGateway reads the gateway's configuration. Besides MERCATO_HTTP_ADDR,
// MERCATO_SHUTDOWN_TIMEOUT and JWKS_URL of the common settings it reads:
//
//	MERCATO_ADDR                  public listen address                  (:8080)
//	MERCATO_<SERVICE>_ADDR        every upstream's gRPC target           (<service>:9090)
//	MERCATO_RATE_LIMIT_RPS        requests/s per client IP and per user,
//	                              bursts of twice that; 0 turns it off   (100)
//	MERCATO_LOGIN_RATE_LIMIT_RPS  requests/s per client IP on login,
//	                              register and refresh                   (a tenth of the above)
//	MERCATO_BODY_LIMIT            largest request body, in bytes         (1048576)
//	MERCATO_REQUEST_TIMEOUT       deadline of each request, passed on to
//	                              the gRPC call                          (10s)
//	MERCATO_CORS_ORIGINS          comma-separated browser origins
//	                              allowed, or *; empty turns CORS off    ("")
//	MERCATO_TRUST_FORWARDED_FOR   take the client IP from the last
//	                              X-Forwarded-For entry (only behind a
//	                              reverse proxy that sets it)            (false)
//	GOGC                          Go's GC target; the gateway's live heap
//	                              is tiny and nearly all it allocates is
//	                              per-request garbage, so it trades a few
//	                              MB for a third less CPU                (400)
//
// A gRPC target is host:port or a URI such as dns:///catalog:9090; either
// way every address it resolves to is used, round-robin.
func readGateway(env *config.Env, upstreams []Service) (gateway.Config, error) {
	c := readCommon(env, gatewayName)
	cfg := gateway.Config{
		Addr:              env.String("MERCATO_ADDR", ":8080"),
		AdminAddr:         c.Server.HTTPAddr,
		ShutdownTimeout:   c.Server.ShutdownTimeout,
		Keys:              c.Keys,
		Registry:          c.Server.Registry,
		RateLimitRPS:      env.Float("MERCATO_RATE_LIMIT_RPS", 100),
		LoginRateLimitRPS: env.Float("MERCATO_LOGIN_RATE_LIMIT_RPS", 0),
		BodyLimitBytes:    int64(env.Int("MERCATO_BODY_LIMIT", gateway.DefaultBodyLimitBytes)),
		RequestTimeout:    env.Duration("MERCATO_REQUEST_TIMEOUT", gateway.DefaultRequestTimeout),
		TrustForwardedFor: env.Bool("MERCATO_TRUST_FORWARDED_FOR", false),
	}
	for _, u := range upstreams {
		cfg.Upstreams = append(cfg.Upstreams, gateway.Upstream{Name: u.Name, Target: target(env, u.Name), API: *u.API})
	}
	for _, origin := range strings.Split(env.String("MERCATO_CORS_ORIGINS", ""), ",") {
		if origin = strings.TrimSpace(origin); origin != "" {
			cfg.CORSAllowedOrigins = append(cfg.CORSAllowedOrigins, origin)
		}
	}
	return cfg, checked(gatewayName, env, cfg)
}

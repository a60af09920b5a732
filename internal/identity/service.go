// Package identity is the identity service: accounts with argon2id
// passwords, EdDSA access tokens signed by rotating keys published as a
// JWKS, rotating refresh tokens whose reuse revokes their family, and a
// user.registered event through the transactional outbox.
package identity

import (
	"context"
	"embed"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	identityv1 "github.com/mercato-dev/mercato/internal/gen/identity/v1"
	"github.com/mercato-dev/mercato/internal/identity/adapters"
	"github.com/mercato-dev/mercato/internal/identity/app"
	"github.com/mercato-dev/mercato/internal/identity/domain"
	"github.com/mercato-dev/mercato/internal/identity/ports"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/config"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/events"
	"github.com/mercato-dev/mercato/internal/platform/observability"
	"github.com/mercato-dev/mercato/internal/platform/server"
)

//go:embed migrations
var migrations embed.FS

// Name is the service's name in logs, metrics and health checks.
const Name = "identity"

// Defaults for the settings a zero Config leaves unset.
const (
	DefaultAccessTokenTTL       = 15 * time.Minute
	DefaultRefreshTokenTTL      = 30 * 24 * time.Hour
	DefaultKeyRotationInterval  = 24 * time.Hour
	DefaultKeyPublishLead       = 10 * time.Minute
	DefaultKeyRefreshInterval   = time.Minute
	DefaultMaxConcurrentHashes  = 4
	DefaultLoginRatePerMinute   = 5
	DefaultLoginIPRatePerMinute = 20
)

// tokenLeeway is added to the access-token lifetime when deciding how long
// a retired key stays published: verifiers accept a few seconds of clock
// skew, and replicas' clocks differ a little.
const tokenLeeway = time.Minute

// sessionPruneInterval is how often expired refresh tokens are deleted.
const sessionPruneInterval = time.Hour

// Config is everything the service needs. Zero durations and a zero
// MaxConcurrentHashes or StreamReplicas take the defaults above; zero login
// rates turn those limits off.
type Config struct {
	Server server.Config
	DB     db.Config
	// NATSURL is the NATS server events are published to.
	NATSURL string
	// StreamReplicas is the replica count of the JetStream streams: 1 for
	// a single server, 3 on a cluster.
	StreamReplicas int

	// AdminEmail and AdminPassword, when both set, make sure at every
	// start that this admin account exists with this password. They are
	// the only way an account becomes an admin.
	AdminEmail    string
	AdminPassword string

	// AccessTokenTTL is the lifetime of access tokens (1 minute to 24 hours).
	AccessTokenTTL time.Duration
	// RefreshTokenTTL is the lifetime of each refresh token; every refresh
	// hands out a new one.
	RefreshTokenTTL time.Duration
	// KeyRotationInterval is how long a signing key signs before the next
	// one takes over.
	KeyRotationInterval time.Duration
	// KeyPublishLead is how long a new key is published before it signs;
	// it must exceed how long verifiers cache the key set (JWKSCache
	// refreshes every 5 minutes, and refetches at once on an unknown kid).
	KeyPublishLead time.Duration
	// KeyRefreshInterval is how often each replica re-reads the keys and
	// checks whether a rotation is due. It must be well under KeyPublishLead.
	KeyRefreshInterval time.Duration

	// MaxConcurrentHashes bounds argon2id hashes running at once (each
	// takes 19 MiB); further logins wait for a slot.
	MaxConcurrentHashes int
	// LoginRatePerMinute bounds login attempts per email, and
	// LoginIPRatePerMinute per client IP, each with an equal burst; 0
	// turns the limit off.
	LoginRatePerMinute   int
	LoginIPRatePerMinute int

	// ServiceSecret is the secret mercato's own services exchange for a
	// service token (IssueServiceToken); empty turns that off. At least 16
	// characters.
	ServiceSecret string
}

func (c Config) withDefaults() Config {
	c.Server = c.Server.Defaults()
	setDefault := func(d *time.Duration, def time.Duration) {
		if *d == 0 {
			*d = def
		}
	}
	setDefault(&c.AccessTokenTTL, DefaultAccessTokenTTL)
	setDefault(&c.RefreshTokenTTL, DefaultRefreshTokenTTL)
	setDefault(&c.KeyRotationInterval, DefaultKeyRotationInterval)
	setDefault(&c.KeyPublishLead, DefaultKeyPublishLead)
	setDefault(&c.KeyRefreshInterval, DefaultKeyRefreshInterval)
	if c.MaxConcurrentHashes == 0 {
		c.MaxConcurrentHashes = DefaultMaxConcurrentHashes
	}
	if c.StreamReplicas == 0 {
		c.StreamReplicas = 1
	}
	return c
}

// Validate reports every problem with the configuration (after defaults).
func (c Config) Validate() error {
	c = c.withDefaults()
	var p config.Problems
	p.Include("server", c.Server.Validate())
	p.Include("database", c.DB.Validate())
	p.Add(c.NATSURL == "", "NATS URL is empty")
	p.Add(c.StreamReplicas < 1 || c.StreamReplicas > 5, "stream replicas must be 1 to 5, got %d", c.StreamReplicas)

	p.Add((c.AdminEmail == "") != (c.AdminPassword == ""), "admin email and admin password must be set together")
	if c.AdminEmail != "" {
		_, err := domain.NormalizeEmail(c.AdminEmail)
		p.Include("admin email", err)
	}
	if c.AdminPassword != "" {
		p.Include("admin password", domain.ValidatePassword(c.AdminPassword))
	}

	p.Add(c.AccessTokenTTL < time.Minute || c.AccessTokenTTL > 24*time.Hour,
		"access token lifetime must be 1m to 24h, got %s", c.AccessTokenTTL)
	p.Add(c.RefreshTokenTTL <= c.AccessTokenTTL || c.RefreshTokenTTL > 365*24*time.Hour,
		"refresh token lifetime must exceed the access token lifetime and be at most 8760h, got %s", c.RefreshTokenTTL)
	p.Add(c.KeyRefreshInterval < time.Second, "key refresh interval must be at least 1s, got %s", c.KeyRefreshInterval)
	p.Add(c.KeyPublishLead < 2*c.KeyRefreshInterval,
		"key publish lead (%s) must be at least twice the key refresh interval (%s)", c.KeyPublishLead, c.KeyRefreshInterval)
	p.Add(c.KeyRotationInterval <= c.KeyPublishLead,
		"key rotation interval (%s) must exceed the key publish lead (%s)", c.KeyRotationInterval, c.KeyPublishLead)
	p.Add(c.MaxConcurrentHashes < 1 || c.MaxConcurrentHashes > 256,
		"max concurrent hashes must be 1 to 256, got %d", c.MaxConcurrentHashes)
	p.Add(c.LoginRatePerMinute < 0, "login rate per minute must not be negative")
	p.Add(c.LoginIPRatePerMinute < 0, "login rate per IP per minute must not be negative")
	p.Add(c.ServiceSecret != "" && len(c.ServiceSecret) < 16, "service secret must be at least 16 characters")
	return p.Err()
}

// Migrate applies the service's schema migrations (and the outbox's) and
// closes the database.
func Migrate(ctx context.Context, cfg Config) error {
	d, err := db.Open(ctx, cfg.DB)
	if err != nil {
		return err
	}
	defer d.Close()
	return migrate(ctx, d)
}

func migrate(ctx context.Context, d *db.DB) error {
	if err := events.Migrate(ctx, d, migrations); err != nil {
		return fmt.Errorf("migrate identity: %w", err)
	}
	return nil
}

// Service is a running identity process.
type Service struct {
	cfg      Config
	log      *slog.Logger
	db       *db.DB
	nc       *nats.Conn
	srv      *server.Server
	relay    *events.Relay
	keys     *app.KeyRing
	sessions *adapters.SessionSQLRepository
}

// New opens and migrates the database, connects to NATS, makes sure a
// signing key and (if configured) the admin account exist, and listens on
// the configured addresses. Call Run to serve.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (svc *Service, err error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d, err := db.Open(ctx, cfg.DB)
	if err != nil {
		return nil, err
	}
	var nc *nats.Conn
	defer func() {
		if err != nil {
			if nc != nil {
				nc.Close()
			}
			_ = d.Close()
		}
	}()
	if err := migrate(ctx, d); err != nil {
		return nil, err
	}
	nc, js, err := events.Connect(ctx, cfg.NATSURL, Name, cfg.StreamReplicas)
	if err != nil {
		return nil, err
	}

	reg := observability.NewRegistry()
	outbox := events.NewOutbox(d)
	sessions := adapters.NewSessionSQLRepository(d)
	keys := app.NewKeyRing(adapters.NewSigningKeySQLRepository(d), domain.KeyPolicy{
		RotationInterval: cfg.KeyRotationInterval,
		PublishLead:      cfg.KeyPublishLead,
		TokenLifetime:    cfg.AccessTokenTTL + tokenLeeway,
	}, logger, nil)
	if err := keys.Rotate(ctx); err != nil {
		return nil, err
	}
	identity := app.New(app.Config{
		AccessTokenTTL: cfg.AccessTokenTTL, RefreshTokenTTL: cfg.RefreshTokenTTL,
		Issuer: auth.DefaultIssuer, Audience: auth.DefaultAudience,
		ServiceSecret: cfg.ServiceSecret,
	}, app.Deps{
		Users:    adapters.NewUserSQLRepository(d, outbox),
		Sessions: sessions,
		Hasher:   adapters.NewArgon2Hasher(adapters.DefaultArgon2Params, cfg.MaxConcurrentHashes),
		Keys:     keys,
		Limiter:  app.NewLoginLimiter(cfg.LoginRatePerMinute, cfg.LoginIPRatePerMinute, 0),
		Logger:   logger,
	})
	if cfg.AdminEmail != "" {
		if err := identity.EnsureAdmin(ctx, cfg.AdminEmail, cfg.AdminPassword); err != nil {
			return nil, err
		}
	}

	// Identity checks its own tokens against its key ring: no HTTP
	// round-trip to itself, and a fresh key is known the moment it exists.
	verifier := auth.NewVerifier(keys, auth.DefaultIssuer, auth.DefaultAudience)
	srv, err := server.New(Name, cfg.Server, logger, reg, auth.UnaryServerInterceptor(verifier, logger, ports.PublicMethods...))
	if err != nil {
		return nil, err
	}
	identityv1.RegisterIdentityServiceServer(srv.GRPC(), ports.NewGRPCServer(identity))
	srv.HandleHTTP("GET "+ports.JWKSPath, ports.JWKSHandler(identity))
	srv.AddCheck("database", d.PingContext)
	srv.AddCheck("nats", events.ConnectedCheck(nc))
	srv.AddCheck("signing_key", keys.Ready)

	return &Service{
		cfg: cfg, log: logger, db: d, nc: nc, srv: srv, keys: keys, sessions: sessions,
		relay: events.NewRelay(outbox, js, logger, events.WithRelayMetrics(reg)),
	}, nil
}

// GRPCAddr is the address the gRPC API listens on.
func (s *Service) GRPCAddr() string { return s.srv.GRPCAddr() }

// HTTPAddr is the address of the admin listener (health, metrics, JWKS).
func (s *Service) HTTPAddr() string { return s.srv.HTTPAddr() }

// Run serves until ctx is cancelled, drains, and closes NATS and the
// database. Besides the APIs it runs the outbox relay, key rotation and
// the pruning of expired refresh tokens.
func (s *Service) Run(ctx context.Context) error {
	// The server stops the components (the relay among them) before it
	// returns, so nothing uses NATS or the database after this.
	defer s.db.Close()
	defer s.nc.Close()
	return s.srv.Run(ctx,
		s.relay.Run,
		server.Every(s.cfg.KeyRefreshInterval, s.keys.Maintain),
		server.Every(sessionPruneInterval, s.pruneSessions),
	)
}

func (s *Service) pruneSessions(ctx context.Context) {
	n, err := s.sessions.PruneExpired(ctx, time.Now())
	switch {
	case err != nil && ctx.Err() == nil:
		s.log.WarnContext(ctx, "prune refresh tokens failed", "error", err.Error())
	case n > 0:
		s.log.InfoContext(ctx, "expired refresh tokens pruned", "count", n)
	}
}

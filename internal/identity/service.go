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

	identityv1 "github.com/mercato-dev/mercato/internal/gen/identity/v1"
	"github.com/mercato-dev/mercato/internal/identity/adapters"
	"github.com/mercato-dev/mercato/internal/identity/app"
	"github.com/mercato-dev/mercato/internal/identity/domain"
	"github.com/mercato-dev/mercato/internal/identity/ports"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/config"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/events"
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

// Streams are the JetStream streams identity publishes its events to.
var Streams = []events.Stream{{Name: "USERS", Domain: "user", Description: "identity events"}}

// Config is everything the service needs. Zero durations and a zero
// MaxConcurrentHashes take the defaults above; zero login
// rates turn those limits off.
type Config struct {
	Server server.Config
	DB     db.Config
	// Events is where identity's events go (its Streams are added).
	Events events.Config

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

// WithDefaults returns c with every unset field filled.
func (c Config) WithDefaults() Config {
	c.Server = c.Server.WithDefaults()
	c.Events = c.Events.WithDefaults().WithStreams(Streams...)
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
	return c
}

// Validate reports every problem with c, once its defaults are filled, at
// once.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var p config.Problems
	p.Include("server", c.Server.Validate())
	p.Include("database", c.DB.Validate())
	p.Include("events", c.Events.Validate())

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

// Migrate applies identity's schema (and the outbox's) to the database cfg
// names and closes it again: what `mercato migrate identity` runs. It is
// idempotent.
func Migrate(ctx context.Context, cfg db.Config) error {
	return db.MigrateAndClose(ctx, cfg, MigrateDB)
}

// MigrateDB applies identity's migrations and the events schema to an open
// database.
func MigrateDB(ctx context.Context, d *db.DB) error {
	if err := events.Migrate(ctx, d, migrations); err != nil {
		return fmt.Errorf("migrate identity: %w", err)
	}
	return nil
}

// Service is a running identity process; its Run, GRPCAddr and HTTPAddr
// come from server.Base.
type Service struct {
	server.Base
	log      *slog.Logger
	sessions *adapters.SessionSQLRepository
}

// New opens and migrates the database, connects to NATS, makes sure a
// signing key and (if configured) the admin account exist, and listens on
// the configured addresses. Besides the API, Run runs the outbox relay, key
// rotation and the pruning of expired refresh tokens.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (_ *Service, err error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("identity configuration: %w", err)
	}
	s := &Service{Base: server.NewBase(Name, logger), log: logger}
	defer s.CloseOnError(&err)

	d, err := s.OpenDB(ctx, cfg.DB, MigrateDB)
	if err != nil {
		return nil, err
	}
	js, err := s.ConnectEvents(ctx, cfg.Events)
	if err != nil {
		return nil, err
	}
	outbox := s.Outbox(d, js, Streams...)
	s.sessions = adapters.NewSessionSQLRepository(d)
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
		Sessions: s.sessions,
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
	grpcServer, err := s.Listen(cfg.Server, auth.UnaryServerInterceptor(verifier, logger, ports.PublicMethods...))
	if err != nil {
		return nil, err
	}
	identityv1.RegisterIdentityServiceServer(grpcServer, ports.NewGRPCServer(identity))
	s.Server().HandleHTTP("GET "+ports.JWKSPath, ports.JWKSHandler(identity))
	s.AddCheck("signing_key", keys.Ready)
	s.AddComponent(server.Every(cfg.KeyRefreshInterval, keys.Maintain))
	s.AddComponent(server.Every(sessionPruneInterval, s.pruneSessions))
	return s, nil
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

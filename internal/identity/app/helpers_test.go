package app_test

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/identity"
	"github.com/mercato-dev/mercato/internal/identity/adapters"
	"github.com/mercato-dev/mercato/internal/identity/app"
	"github.com/mercato-dev/mercato/internal/identity/domain"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
	"github.com/mercato-dev/mercato/internal/platform/events"
)

// cheapParams keep the tests fast; production uses adapters.DefaultArgon2Params.
var cheapParams = adapters.Argon2Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 32}

const (
	accessTTL = 15 * time.Minute
	password  = "correct horse battery"
	// serviceSecret is what the services present for a service token.
	serviceSecret = "service-secret-of-the-tests"
)

var testPolicy = domain.KeyPolicy{RotationInterval: time.Hour, PublishLead: 10 * time.Minute, TokenLifetime: accessTTL + time.Minute}

// fakeClock is a settable clock safe for concurrent use. It starts at the
// real time, so the tokens it stamps are valid for the JWT library too.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// countingHasher counts the hashes spent on unknown accounts.
type countingHasher struct {
	*adapters.Argon2Hasher
	burns atomic.Int64
}

func (h *countingHasher) Burn(ctx context.Context, password string) error {
	h.burns.Add(1)
	return h.Argon2Hasher.Burn(ctx, password)
}

type harness struct {
	d        *db.DB
	app      *app.Identity
	keys     *app.KeyRing
	clock    *fakeClock
	hasher   *countingHasher
	sessions *adapters.SessionSQLRepository
	users    *adapters.UserSQLRepository
	verifier *auth.Verifier
}

type harnessOptions struct {
	emailPerMinute, ipPerMinute int
}

func newHarness(t *testing.T, url string, opts harnessOptions) *harness {
	t.Helper()
	require.NoError(t, identity.Migrate(t.Context(), db.Config{URL: url}))
	d := dbtest.Open(t, url)
	clock := &fakeClock{t: time.Now().UTC()}
	logger := slog.New(slog.DiscardHandler)
	keys := app.NewKeyRing(adapters.NewSigningKeySQLRepository(d), testPolicy, logger, clock.Now)
	require.NoError(t, keys.Rotate(t.Context()))
	h := &harness{
		d: d, keys: keys, clock: clock,
		hasher:   &countingHasher{Argon2Hasher: adapters.NewArgon2Hasher(cheapParams, 4)},
		sessions: adapters.NewSessionSQLRepository(d),
		users:    adapters.NewUserSQLRepository(d, events.NewOutbox(d)),
		verifier: auth.NewVerifier(keys, auth.DefaultIssuer, auth.DefaultAudience),
	}
	h.app = app.New(app.Config{
		AccessTokenTTL: accessTTL, RefreshTokenTTL: 30 * 24 * time.Hour,
		Issuer: auth.DefaultIssuer, Audience: auth.DefaultAudience,
		ServiceSecret: serviceSecret,
	}, app.Deps{
		Users: h.users, Sessions: h.sessions, Hasher: h.hasher, Keys: keys,
		Limiter: app.NewLoginLimiter(opts.emailPerMinute, opts.ipPerMinute, 0),
		Logger:  logger, Now: clock.Now,
	})
	return h
}

// forEachEngine runs test with a harness on SQLite and on PostgreSQL.
func forEachEngine(t *testing.T, opts harnessOptions, test func(t *testing.T, h *harness)) {
	t.Helper()
	for _, engine := range dbtest.Engines(t) {
		t.Run(engine.Name, func(t *testing.T) { test(t, newHarness(t, engine.URL, opts)) })
	}
}

// sqliteHarness is a harness on SQLite only, for behaviour that does not
// depend on the engine.
func sqliteHarness(t *testing.T, opts harnessOptions) *harness {
	t.Helper()
	return newHarness(t, dbtest.SQLiteURL(t), opts)
}

func (h *harness) register(t *testing.T, email string) domain.User {
	t.Helper()
	u, err := h.app.Register(t.Context(), domain.Registration{Email: email, Password: password, Name: "Ann"})
	require.NoError(t, err)
	return u
}

func (h *harness) login(t *testing.T, email string) app.TokenPair {
	t.Helper()
	pair, err := h.app.Login(t.Context(), email, password, "192.0.2.1")
	require.NoError(t, err)
	return pair
}

func (h *harness) outboxEvents(t *testing.T, subject string) [][]byte {
	t.Helper()
	rows, err := h.d.QueryContext(t.Context(), `SELECT payload FROM outbox WHERE subject = $1 ORDER BY seq`, subject)
	require.NoError(t, err)
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var p []byte
		require.NoError(t, rows.Scan(&p))
		out = append(out, p)
	}
	require.NoError(t, rows.Err())
	return out
}

func adaptersKeys(h *harness) *adapters.SigningKeySQLRepository {
	return adapters.NewSigningKeySQLRepository(h.d)
}

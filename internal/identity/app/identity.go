// Package app holds identity's use cases: registering, logging in,
// rotating and revoking refresh tokens, issuing access tokens, publishing
// and rotating signing keys, and the bootstrap admin account.
package app

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/mercato-dev/mercato/internal/identity/domain"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/events"
)

// UserRepository stores accounts.
type UserRepository interface {
	// CreateUser inserts u and queues evs in the same transaction;
	// domain.ErrEmailTaken when the email is registered.
	CreateUser(ctx context.Context, u domain.User, evs ...events.Event) error
	// UserByEmail and UserByID return domain.ErrUserNotFound when absent.
	UserByEmail(ctx context.Context, email string) (domain.User, error)
	UserByID(ctx context.Context, id string) (domain.User, error)
	// SetPasswordHash replaces the hash of an unchanged password.
	SetPasswordHash(ctx context.Context, id, hash string, now time.Time) error
	// SetCredentials sets password hash and role and revokes the user's
	// sessions, in one transaction.
	SetCredentials(ctx context.Context, id, hash, role string, now time.Time) error
}

// SessionRepository stores refresh-token families.
type SessionRepository interface {
	CreateSession(ctx context.Context, family domain.RefreshFamily, first domain.RefreshToken) error
	// RotateRefreshToken exchanges the token with hash for next and
	// returns the old one; domain.ErrRefreshTokenInvalid or, after revoking
	// the family, domain.ErrRefreshTokenReused.
	RotateRefreshToken(ctx context.Context, hash []byte, next domain.RefreshToken, now time.Time) (domain.RefreshToken, error)
	// RevokeSession revokes the family of the token with hash when it
	// belongs to userID.
	RevokeSession(ctx context.Context, hash []byte, userID string, now time.Time) (bool, error)
}

// PasswordHasher hashes and checks passwords. Every method that hashes
// may wait for a slot and fails when ctx ends first.
type PasswordHasher interface {
	Hash(ctx context.Context, password string) (string, error)
	Verify(ctx context.Context, password, encoded string) (bool, error)
	// Burn spends one hash's work for nothing (unknown accounts).
	Burn(ctx context.Context, password string) error
	NeedsRehash(encoded string) bool
}

// Config are the token settings.
type Config struct {
	AccessTokenTTL  time.Duration
	RefreshTokenTTL time.Duration
	Issuer          string
	Audience        string
	// ServiceSecret is the shared secret mercato's services present to get
	// a service token; empty turns service tokens off.
	ServiceSecret string
}

// Deps are the collaborators of Identity. Limiter may be nil (no limits),
// Logger nil (discard), Now nil (time.Now).
type Deps struct {
	Users    UserRepository
	Sessions SessionRepository
	Hasher   PasswordHasher
	Keys     *KeyRing
	Limiter  *LoginLimiter
	Logger   *slog.Logger
	Now      func() time.Time
}

// Identity is the use cases. It is safe for concurrent use.
type Identity struct {
	cfg      Config
	users    UserRepository
	sessions SessionRepository
	hasher   PasswordHasher
	keys     *KeyRing
	limiter  *LoginLimiter
	log      *slog.Logger
	clock    func() time.Time
}

// New returns the use cases over deps.
func New(cfg Config, deps Deps) *Identity {
	clock, logger := deps.Now, deps.Logger
	if clock == nil {
		clock = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Identity{
		cfg: cfg, users: deps.Users, sessions: deps.Sessions, hasher: deps.Hasher, keys: deps.Keys,
		limiter: deps.Limiter, log: logger, clock: clock,
	}
}

// now is the current time as stored: UTC, microseconds.
func (a *Identity) now() time.Time { return a.clock().UTC().Truncate(time.Microsecond) }

// TokenPair is what a login or refresh hands out.
type TokenPair struct {
	AccessToken  string
	RefreshToken string
	// ExpiresIn is the access token's lifetime.
	ExpiresIn time.Duration
}

// RateLimitedError is domain.ErrTooManyLogins with the time after which a
// retry can succeed, for a Retry-After header.
type RateLimitedError struct {
	RetryAfter time.Duration
}

func (e *RateLimitedError) Error() string { return domain.ErrTooManyLogins.Error() }

// Unwrap makes the error match domain.ErrTooManyLogins and carry its kind.
func (e *RateLimitedError) Unwrap() error { return domain.ErrTooManyLogins }

// Register opens a customer account and announces it with a
// user.registered event committed together with it. Errors: the domain's
// validation errors, domain.ErrEmailTaken.
func (a *Identity) Register(ctx context.Context, r domain.Registration) (domain.User, error) {
	r, err := r.Validate()
	if err != nil {
		return domain.User{}, err
	}
	hash, err := a.hasher.Hash(ctx, r.Password)
	if err != nil {
		return domain.User{}, fmt.Errorf("hash password: %w", err)
	}
	now := a.now()
	u := domain.User{
		ID: newID(), Email: r.Email, Name: r.Name, Role: domain.RoleCustomer,
		PasswordHash: hash, CreatedAt: now, UpdatedAt: now,
	}
	payload, err := domain.UserRegisteredPayload(u)
	if err != nil {
		return domain.User{}, err
	}
	ev := events.Event{ID: newID(), Subject: domain.SubjectUserRegistered, Payload: payload}
	if err := a.users.CreateUser(ctx, u, ev); err != nil {
		return domain.User{}, fmt.Errorf("register: %w", err)
	}
	a.log.InfoContext(ctx, "user registered", "user_id", u.ID)
	return u, nil
}

// Login checks credentials and starts a session. clientIP may be empty.
// Errors: domain.ErrInvalidCredentials whatever was wrong (the answer
// takes one password hash either way, so it does not reveal whether the
// account exists), *RateLimitedError when the IP or email made too many
// attempts.
func (a *Identity) Login(ctx context.Context, email, password, clientIP string) (TokenPair, error) {
	if retry, ok := a.limiter.Allow(clientIP, domain.LoginKey(email), a.clock()); !ok {
		a.log.InfoContext(ctx, "login rate limited", "client_ip", clientIP)
		return TokenPair{}, &RateLimitedError{RetryAfter: retry}
	}
	// No account can have an invalid address or an over-long password, so
	// refusing those without hashing reveals nothing.
	normalized, err := domain.NormalizeEmail(email)
	if err != nil || len(password) > domain.MaxPasswordBytes {
		return TokenPair{}, domain.ErrInvalidCredentials
	}
	u, err := a.users.UserByEmail(ctx, normalized)
	if errors.Is(err, domain.ErrUserNotFound) {
		if err := a.hasher.Burn(ctx, password); err != nil {
			return TokenPair{}, fmt.Errorf("login: %w", err)
		}
		return TokenPair{}, domain.ErrInvalidCredentials
	}
	if err != nil {
		return TokenPair{}, fmt.Errorf("login: %w", err)
	}
	ok, err := a.hasher.Verify(ctx, password, u.PasswordHash)
	if err != nil {
		return TokenPair{}, fmt.Errorf("login: check password of user %s: %w", u.ID, err)
	}
	if !ok {
		a.log.InfoContext(ctx, "login failed", "user_id", u.ID, "client_ip", clientIP)
		return TokenPair{}, domain.ErrInvalidCredentials
	}
	if a.hasher.NeedsRehash(u.PasswordHash) {
		a.upgradeHash(ctx, u, password)
	}
	return a.startSession(ctx, u)
}

// upgradeHash re-hashes a correct password made with older parameters. A
// failure only postpones the upgrade to the next login.
func (a *Identity) upgradeHash(ctx context.Context, u domain.User, password string) {
	hash, err := a.hasher.Hash(ctx, password)
	if err == nil {
		err = a.users.SetPasswordHash(ctx, u.ID, hash, a.now())
	}
	if err != nil {
		a.log.WarnContext(ctx, "password rehash failed", "user_id", u.ID, "error", err.Error())
	}
}

func (a *Identity) startSession(ctx context.Context, u domain.User) (TokenPair, error) {
	now := a.now()
	secret, hash := domain.NewRefreshSecret()
	family := domain.RefreshFamily{ID: newID(), UserID: u.ID, CreatedAt: now}
	first := domain.RefreshToken{Hash: hash, FamilyID: family.ID, UserID: u.ID, CreatedAt: now, ExpiresAt: now.Add(a.cfg.RefreshTokenTTL)}
	access, err := a.accessToken(u, now)
	if err != nil {
		return TokenPair{}, err
	}
	if err := a.sessions.CreateSession(ctx, family, first); err != nil {
		return TokenPair{}, fmt.Errorf("start session: %w", err)
	}
	a.log.InfoContext(ctx, "user logged in", "user_id", u.ID, "family_id", family.ID)
	return TokenPair{AccessToken: access, RefreshToken: secret, ExpiresIn: a.cfg.AccessTokenTTL}, nil
}

// Refresh exchanges a refresh token for a new pair; the old token is spent.
// Errors: domain.ErrRefreshTokenRequired, domain.ErrRefreshTokenInvalid
// (unknown, expired, revoked), domain.ErrRefreshTokenReused (the token was
// spent before, so it leaked or two clients race: the whole family is
// revoked and its newest token stops working too).
func (a *Identity) Refresh(ctx context.Context, refreshToken string) (TokenPair, error) {
	if refreshToken == "" {
		return TokenPair{}, domain.ErrRefreshTokenRequired
	}
	hash := domain.HashRefreshSecret(refreshToken)
	if hash == nil {
		return TokenPair{}, domain.ErrRefreshTokenInvalid
	}
	now := a.now()
	secret, nextHash := domain.NewRefreshSecret()
	next := domain.RefreshToken{Hash: nextHash, CreatedAt: now, ExpiresAt: now.Add(a.cfg.RefreshTokenTTL)}
	old, err := a.sessions.RotateRefreshToken(ctx, hash, next, now)
	if errors.Is(err, domain.ErrRefreshTokenReused) {
		a.log.WarnContext(ctx, "refresh token reuse, session revoked", "user_id", old.UserID, "family_id", old.FamilyID)
		return TokenPair{}, err
	}
	if err != nil {
		return TokenPair{}, fmt.Errorf("refresh: %w", err)
	}
	u, err := a.users.UserByID(ctx, old.UserID)
	if errors.Is(err, domain.ErrUserNotFound) {
		return TokenPair{}, domain.ErrRefreshTokenInvalid
	}
	if err != nil {
		return TokenPair{}, fmt.Errorf("refresh: %w", err)
	}
	access, err := a.accessToken(u, now)
	if err != nil {
		return TokenPair{}, err
	}
	return TokenPair{AccessToken: access, RefreshToken: secret, ExpiresIn: a.cfg.AccessTokenTTL}, nil
}

// Logout revokes the session of refreshToken if it belongs to the caller.
// A token that is unknown, already revoked or someone else's is ignored
// without saying so, so the answer reveals nothing about it.
func (a *Identity) Logout(ctx context.Context, caller auth.Principal, refreshToken string) error {
	if refreshToken == "" {
		return domain.ErrRefreshTokenRequired
	}
	hash := domain.HashRefreshSecret(refreshToken)
	if hash == nil {
		return nil
	}
	revoked, err := a.sessions.RevokeSession(ctx, hash, caller.UserID, a.now())
	if err != nil {
		return fmt.Errorf("logout: %w", err)
	}
	if revoked {
		a.log.InfoContext(ctx, "user logged out", "user_id", caller.UserID)
	}
	return nil
}

// Me returns the caller's account; domain.ErrUserNotFound if it is gone.
func (a *Identity) Me(ctx context.Context, caller auth.Principal) (domain.User, error) {
	u, err := a.users.UserByID(ctx, caller.UserID)
	if err != nil {
		return domain.User{}, fmt.Errorf("me: %w", err)
	}
	return u, nil
}

// JWKS returns the public keys verifiers must know now, newest first.
func (a *Identity) JWKS() []domain.JWK {
	keys := a.keys.Published()
	out := make([]domain.JWK, 0, len(keys))
	for _, k := range keys {
		out = append(out, k.JWK())
	}
	return out
}

// serviceClientID is a service's name: lower-case letters, digits, dashes.
var serviceClientID = regexp.MustCompile(`^[a-z][a-z0-9-]{0,39}$`)

// IssueServiceToken hands one of mercato's services an access token with
// the service role (client credentials: no refresh token; the service asks
// again before the token expires). Every failure is
// domain.ErrServiceCredentials.
func (a *Identity) IssueServiceToken(_ context.Context, clientID, secret string) (TokenPair, error) {
	if a.cfg.ServiceSecret == "" || !serviceClientID.MatchString(clientID) {
		return TokenPair{}, domain.ErrServiceCredentials
	}
	// Comparing digests keeps the comparison constant-time whatever the
	// length of what was sent.
	want, got := sha256.Sum256([]byte(a.cfg.ServiceSecret)), sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare(want[:], got[:]) != 1 {
		return TokenPair{}, domain.ErrServiceCredentials
	}
	access, err := a.accessToken(domain.User{ID: "service:" + clientID, Role: auth.RoleService}, a.now())
	if err != nil {
		return TokenPair{}, err
	}
	return TokenPair{AccessToken: access, ExpiresIn: a.cfg.AccessTokenTTL}, nil
}

// accessToken signs a token for u with the current signing key.
func (a *Identity) accessToken(u domain.User, now time.Time) (string, error) {
	key, err := a.keys.Signer()
	if err != nil {
		return "", err
	}
	claims := auth.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    a.cfg.Issuer,
			Subject:   u.ID,
			Audience:  jwt.ClaimStrings{a.cfg.Audience},
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(a.cfg.AccessTokenTTL)),
			ID:        uuid.NewString(),
		},
		Role:  u.Role,
		Email: u.Email,
	}
	token := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	token.Header["kid"] = key.ID
	signed, err := token.SignedString(key.PrivateKey)
	if err != nil {
		return "", fmt.Errorf("sign access token: %w", err)
	}
	return signed, nil
}

// EnsureAdmin makes sure an admin account with email and password exists:
// it creates it, or sets the role and password of the account holding that
// email (revoking its sessions, so a previous holder cannot go on). When
// the account is already an admin with that password nothing changes, so
// every replica may call it at every start.
func (a *Identity) EnsureAdmin(ctx context.Context, email, password string) error {
	email, err := domain.NormalizeEmail(email)
	if err != nil {
		return fmt.Errorf("admin email: %w", err)
	}
	if err := domain.ValidatePassword(password); err != nil {
		return fmt.Errorf("admin password: %w", err)
	}
	for range 2 { // a second round when another replica creates it first
		u, err := a.users.UserByEmail(ctx, email)
		if errors.Is(err, domain.ErrUserNotFound) {
			err = a.createAdmin(ctx, email, password)
			if errors.Is(err, domain.ErrEmailTaken) {
				continue
			}
			return err
		}
		if err != nil {
			return fmt.Errorf("ensure admin: %w", err)
		}
		same, err := a.hasher.Verify(ctx, password, u.PasswordHash)
		if ctx.Err() != nil {
			return fmt.Errorf("ensure admin: %w", ctx.Err())
		}
		// An unreadable stored hash (err != nil) counts as different and
		// is replaced below.
		if err == nil && same && u.Role == domain.RoleAdmin {
			return nil
		}
		hash, err := a.hasher.Hash(ctx, password)
		if err != nil {
			return fmt.Errorf("ensure admin: %w", err)
		}
		if err := a.users.SetCredentials(ctx, u.ID, hash, domain.RoleAdmin, a.now()); err != nil {
			return fmt.Errorf("ensure admin: %w", err)
		}
		a.log.InfoContext(ctx, "admin account updated", "user_id", u.ID)
		return nil
	}
	return errors.New("ensure admin: account keeps changing concurrently")
}

func (a *Identity) createAdmin(ctx context.Context, email, password string) error {
	hash, err := a.hasher.Hash(ctx, password)
	if err != nil {
		return fmt.Errorf("ensure admin: %w", err)
	}
	now := a.now()
	u := domain.User{ID: newID(), Email: email, Name: "Administrator", Role: domain.RoleAdmin, PasswordHash: hash, CreatedAt: now, UpdatedAt: now}
	// No user.registered: nobody signed up, and nobody should get a welcome email.
	if err := a.users.CreateUser(ctx, u); err != nil {
		return err
	}
	a.log.InfoContext(ctx, "admin account created", "user_id", u.ID)
	return nil
}

// newID returns a time-ordered UUID (v7), which keeps index inserts local.
func newID() string { return uuid.Must(uuid.NewV7()).String() }

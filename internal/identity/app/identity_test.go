package app_test

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/identity/app"
	"github.com/mercato-dev/mercato/internal/identity/domain"
	"github.com/mercato-dev/mercato/internal/platform/apperr"
	"github.com/mercato-dev/mercato/internal/platform/auth"
)

func TestRegister(t *testing.T) {
	forEachEngine(t, harnessOptions{}, func(t *testing.T, h *harness) {
		u, err := h.app.Register(t.Context(), domain.Registration{Email: " Ann@Example.COM ", Password: password, Name: " Ann Lee "})
		require.NoError(t, err)
		require.NotEmpty(t, u.ID)
		require.Equal(t, "ann@example.com", u.Email)
		require.Equal(t, "Ann Lee", u.Name)
		require.Equal(t, domain.RoleCustomer, u.Role)
		require.True(t, strings.HasPrefix(u.PasswordHash, "$argon2id$"), "only a hash is kept")

		evs := h.outboxEvents(t, domain.SubjectUserRegistered)
		require.Len(t, evs, 1)
		var ev domain.UserRegistered
		require.NoError(t, json.Unmarshal(evs[0], &ev))
		require.Equal(t, domain.UserRegistered{UserID: u.ID, Email: "ann@example.com", Name: "Ann Lee", RegisteredAt: u.CreatedAt}, ev)

		_, err = h.app.Register(t.Context(), domain.Registration{Email: "ANN@example.com", Password: "another password", Name: "Impostor"})
		require.ErrorIs(t, err, domain.ErrEmailTaken)
		require.Equal(t, apperr.Conflict, apperr.KindOf(err))
		require.Len(t, h.outboxEvents(t, domain.SubjectUserRegistered), 1, "a refused registration publishes nothing")

		_, err = h.app.Register(t.Context(), domain.Registration{Email: "bob@example.com", Password: "short", Name: "Bob"})
		require.ErrorIs(t, err, domain.ErrPasswordShort)
		_, err = h.app.Login(t.Context(), "bob@example.com", "short", "")
		require.ErrorIs(t, err, domain.ErrInvalidCredentials, "nothing was stored for an invalid registration")
	})
}

func TestLogin(t *testing.T) {
	h := sqliteHarness(t, harnessOptions{})
	u := h.register(t, "ann@example.com")

	pair := h.login(t, "ANN@example.com ")

	require.Equal(t, accessTTL, pair.ExpiresIn)
	require.NotEmpty(t, pair.RefreshToken)
	p, err := h.verifier.Verify(t.Context(), pair.AccessToken)
	require.NoError(t, err)
	require.Equal(t, auth.Principal{UserID: u.ID, Email: u.Email, Role: domain.RoleCustomer, Token: pair.AccessToken}, p)

	var claims auth.Claims
	parsed, _, err := jwt.NewParser().ParseUnverified(pair.AccessToken, &claims)
	require.NoError(t, err)
	signer, err := h.keys.Signer()
	require.NoError(t, err)
	require.Equal(t, "EdDSA", parsed.Method.Alg())
	require.Equal(t, signer.ID, parsed.Header["kid"])
	require.Equal(t, auth.DefaultIssuer, claims.Issuer)
	require.Equal(t, jwt.ClaimStrings{auth.DefaultAudience}, claims.Audience)
	require.Equal(t, accessTTL, claims.ExpiresAt.Sub(claims.IssuedAt.Time))
	require.NotEmpty(t, claims.ID)

	other := h.login(t, "ann@example.com")
	var otherClaims auth.Claims
	_, _, err = jwt.NewParser().ParseUnverified(other.AccessToken, &otherClaims)
	require.NoError(t, err)
	require.NotEqual(t, claims.ID, otherClaims.ID, "every token has its own jti")
	require.NotEqual(t, pair.RefreshToken, other.RefreshToken)
}

func TestLoginRefusesBadCredentialsAlike(t *testing.T) {
	h := sqliteHarness(t, harnessOptions{})
	h.register(t, "ann@example.com")

	tests := []struct {
		name, email, password string
		burns                 int64
	}{
		{"wrong password", "ann@example.com", "wrong password", 0},
		{"unknown email", "nobody@example.com", password, 1},
		{"invalid email", "not an email", password, 0},
		{"empty", "", "", 0},
		{"over-long password", "ann@example.com", strings.Repeat("x", domain.MaxPasswordBytes+1), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := h.hasher.burns.Load()
			_, err := h.app.Login(t.Context(), tt.email, tt.password, "192.0.2.1")
			require.ErrorIs(t, err, domain.ErrInvalidCredentials)
			require.Equal(t, apperr.Unauthenticated, apperr.KindOf(err))
			require.Equal(t, "invalid email or password", err.Error())
			require.Equal(t, tt.burns, h.hasher.burns.Load()-before, "an unknown account costs a hash like a known one")
		})
	}
}

func TestRefreshRotates(t *testing.T) {
	forEachEngine(t, harnessOptions{}, func(t *testing.T, h *harness) {
		u := h.register(t, "ann@example.com")
		first := h.login(t, "ann@example.com")

		second, err := h.app.Refresh(t.Context(), first.RefreshToken)
		require.NoError(t, err)
		require.NotEqual(t, first.RefreshToken, second.RefreshToken)
		p, err := h.verifier.Verify(t.Context(), second.AccessToken)
		require.NoError(t, err)
		require.Equal(t, u.ID, p.UserID)

		third, err := h.app.Refresh(t.Context(), second.RefreshToken)
		require.NoError(t, err, "the rotated token works in turn")
		require.NotEqual(t, second.RefreshToken, third.RefreshToken)
	})
}

func TestRefreshReuseRevokesTheFamily(t *testing.T) {
	forEachEngine(t, harnessOptions{}, func(t *testing.T, h *harness) {
		h.register(t, "ann@example.com")
		stolen := h.login(t, "ann@example.com")
		other := h.login(t, "ann@example.com") // another device: another family
		legit, err := h.app.Refresh(t.Context(), stolen.RefreshToken)
		require.NoError(t, err)

		_, err = h.app.Refresh(t.Context(), stolen.RefreshToken)
		require.ErrorIs(t, err, domain.ErrRefreshTokenReused)
		require.Equal(t, apperr.Unauthenticated, apperr.KindOf(err))

		_, err = h.app.Refresh(t.Context(), legit.RefreshToken)
		require.ErrorIs(t, err, domain.ErrRefreshTokenInvalid, "the newest token of the family stops working too")
		_, err = h.app.Refresh(t.Context(), other.RefreshToken)
		require.NoError(t, err, "other sessions are not affected")
	})
}

func TestRefreshRefusesUnusableTokens(t *testing.T) {
	h := sqliteHarness(t, harnessOptions{})
	h.register(t, "ann@example.com")
	pair := h.login(t, "ann@example.com")

	_, err := h.app.Refresh(t.Context(), "")
	require.ErrorIs(t, err, domain.ErrRefreshTokenRequired)
	_, err = h.app.Refresh(t.Context(), "garbage")
	require.ErrorIs(t, err, domain.ErrRefreshTokenInvalid)
	unknown, _ := domain.NewRefreshSecret()
	_, err = h.app.Refresh(t.Context(), unknown)
	require.ErrorIs(t, err, domain.ErrRefreshTokenInvalid)

	h.clock.Advance(30*24*time.Hour + time.Second)
	_, err = h.app.Refresh(t.Context(), pair.RefreshToken)
	require.ErrorIs(t, err, domain.ErrRefreshTokenInvalid, "expired")
}

func TestConcurrentRefreshWithOneTokenHasOneWinner(t *testing.T) {
	forEachEngine(t, harnessOptions{}, func(t *testing.T, h *harness) {
		h.register(t, "ann@example.com")
		pair := h.login(t, "ann@example.com")

		const n = 8
		results := make([]app.TokenPair, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				results[i], errs[i] = h.app.Refresh(t.Context(), pair.RefreshToken)
			})
		}
		close(start)
		wg.Wait()

		wins := 0
		for i, err := range errs {
			if err == nil {
				wins++
				_, verr := h.verifier.Verify(t.Context(), results[i].AccessToken)
				require.NoError(t, verr)
				continue
			}
			require.ErrorIs(t, err, domain.ErrRefreshTokenReused)
		}
		require.Equal(t, 1, wins, "exactly one exchange succeeds")
	})
}

func TestLogout(t *testing.T) {
	forEachEngine(t, harnessOptions{}, func(t *testing.T, h *harness) {
		ann := h.register(t, "ann@example.com")
		h.register(t, "bob@example.com")
		annPair := h.login(t, "ann@example.com")
		bobPair := h.login(t, "bob@example.com")
		annCaller := auth.Principal{UserID: ann.ID, Role: ann.Role}

		require.NoError(t, h.app.Logout(t.Context(), annCaller, bobPair.RefreshToken), "someone else's token: no error, no effect")
		_, err := h.app.Refresh(t.Context(), bobPair.RefreshToken)
		require.NoError(t, err, "bob's session survives ann's attempt")

		require.NoError(t, h.app.Logout(t.Context(), annCaller, "garbage"))
		require.ErrorIs(t, h.app.Logout(t.Context(), annCaller, ""), domain.ErrRefreshTokenRequired)

		rotated, err := h.app.Refresh(t.Context(), annPair.RefreshToken)
		require.NoError(t, err)
		require.NoError(t, h.app.Logout(t.Context(), annCaller, rotated.RefreshToken))
		_, err = h.app.Refresh(t.Context(), rotated.RefreshToken)
		require.ErrorIs(t, err, domain.ErrRefreshTokenInvalid, "the session is over")
		require.NoError(t, h.app.Logout(t.Context(), annCaller, rotated.RefreshToken), "logging out twice is fine")
	})
}

func TestMe(t *testing.T) {
	h := sqliteHarness(t, harnessOptions{})
	u := h.register(t, "ann@example.com")

	got, err := h.app.Me(t.Context(), auth.Principal{UserID: u.ID})
	require.NoError(t, err)
	require.Equal(t, u.ID, got.ID)
	require.Equal(t, "ann@example.com", got.Email)

	_, err = h.app.Me(t.Context(), auth.Principal{UserID: "gone"})
	require.ErrorIs(t, err, domain.ErrUserNotFound)
}

func kidOf(t *testing.T, token string) string {
	t.Helper()
	parsed, _, err := jwt.NewParser().ParseUnverified(token, &auth.Claims{})
	require.NoError(t, err)
	kid, _ := parsed.Header["kid"].(string)
	return kid
}

func jwksKids(h *harness) []string {
	var kids []string
	for _, k := range h.app.JWKS() {
		kids = append(kids, k.Kid)
	}
	return kids
}

func TestKeyRotation(t *testing.T) {
	forEachEngine(t, harnessOptions{}, func(t *testing.T, h *harness) {
		ctx := t.Context()
		h.register(t, "ann@example.com")
		first, err := h.keys.Signer()
		require.NoError(t, err)
		require.Equal(t, []string{first.ID}, jwksKids(h))
		require.Equal(t, "OKP", h.app.JWKS()[0].Kty)
		oldToken := h.login(t, "ann@example.com").AccessToken
		require.Equal(t, first.ID, kidOf(t, oldToken))

		// One publish lead before the key's hour is up, its successor is
		// published but does not sign yet.
		h.clock.Set(first.ActivatesAt.Add(testPolicy.RotationInterval - testPolicy.PublishLead))
		require.NoError(t, h.keys.Rotate(ctx))
		kids := jwksKids(h)
		require.Len(t, kids, 2)
		next := kids[0]
		require.NotEqual(t, first.ID, next)
		require.Equal(t, first.ID, kidOf(t, h.login(t, "ann@example.com").AccessToken), "a published key does not sign before it activates")
		require.NoError(t, h.keys.Rotate(ctx))
		require.Len(t, jwksKids(h), 2, "rotating again before the successor activates changes nothing")

		// Another replica, reading the same database, agrees.
		replica := app.NewKeyRing(adaptersKeys(h), testPolicy, nil, h.clock.Now)
		require.NoError(t, replica.Reload(ctx))
		replicaSigner, err := replica.Signer()
		require.NoError(t, err)
		require.Equal(t, first.ID, replicaSigner.ID)

		// At the hour the successor signs; the old key stays published and
		// tokens it signed still verify.
		h.clock.Advance(testPolicy.PublishLead)
		newToken := h.login(t, "ann@example.com").AccessToken
		require.Equal(t, next, kidOf(t, newToken))
		require.NoError(t, h.keys.Rotate(ctx))
		require.Equal(t, []string{next, first.ID}, jwksKids(h))
		_, err = h.verifier.Verify(ctx, oldToken)
		require.NoError(t, err, "a token signed by the retired key still verifies")
		_, err = h.verifier.Verify(ctx, newToken)
		require.NoError(t, err)

		// Once every token the old key signed has expired, it is withdrawn
		// and deleted.
		h.clock.Advance(testPolicy.TokenLifetime)
		require.NoError(t, h.keys.Rotate(ctx))
		require.Equal(t, []string{next}, jwksKids(h))
		stored, err := adaptersKeys(h).SigningKeys(ctx)
		require.NoError(t, err)
		require.Len(t, stored, 1)
		_, err = h.verifier.Verify(ctx, oldToken)
		require.ErrorIs(t, err, auth.ErrInvalidToken)
		_, err = h.verifier.Verify(ctx, newToken)
		require.NoError(t, err)
	})
}

func TestReplicasRotatingAtOnceMakeOneKey(t *testing.T) {
	forEachEngine(t, harnessOptions{}, func(t *testing.T, h *harness) {
		first, err := h.keys.Signer()
		require.NoError(t, err)
		h.clock.Set(first.ActivatesAt.Add(testPolicy.RotationInterval))

		const replicas = 4
		errs := make([]error, replicas)
		var wg sync.WaitGroup
		for i := range replicas {
			ring := app.NewKeyRing(adaptersKeys(h), testPolicy, nil, h.clock.Now)
			wg.Go(func() { errs[i] = ring.Rotate(t.Context()) })
		}
		wg.Wait()
		require.NoError(t, errors.Join(errs...))

		stored, err := adaptersKeys(h).SigningKeys(t.Context())
		require.NoError(t, err)
		require.Len(t, stored, 2, "one successor, not one per replica")
	})
}

func TestKeyRingKnowsKeysMadeByAnotherReplica(t *testing.T) {
	h := sqliteHarness(t, harnessOptions{})
	first, err := h.keys.Signer()
	require.NoError(t, err)
	other := app.NewKeyRing(adaptersKeys(h), testPolicy, nil, h.clock.Now)
	h.clock.Set(first.ActivatesAt.Add(testPolicy.RotationInterval - testPolicy.PublishLead))
	require.NoError(t, other.Rotate(t.Context()))
	otherKeys := other.Published()
	require.Len(t, otherKeys, 2)

	h.clock.Advance(10 * time.Second) // past the unknown-kid reload throttle
	pub, err := h.keys.Key(t.Context(), otherKeys[0].ID)
	require.NoError(t, err, "an unknown kid makes the ring re-read the store")
	require.Equal(t, otherKeys[0].PublicKey(), pub)

	_, err = h.keys.Key(t.Context(), "forged")
	require.ErrorIs(t, err, auth.ErrUnknownKey)
}

func TestEnsureAdmin(t *testing.T) {
	forEachEngine(t, harnessOptions{}, func(t *testing.T, h *harness) {
		ctx := t.Context()
		require.NoError(t, h.app.EnsureAdmin(ctx, "Admin@Example.com", "admin password 1"))
		admin, err := h.users.UserByEmail(ctx, "admin@example.com")
		require.NoError(t, err)
		require.Equal(t, domain.RoleAdmin, admin.Role)
		require.Empty(t, h.outboxEvents(t, domain.SubjectUserRegistered), "the bootstrap admin is not announced as a sign-up")

		pair, err := h.app.Login(ctx, "admin@example.com", "admin password 1", "")
		require.NoError(t, err)
		p, err := h.verifier.Verify(ctx, pair.AccessToken)
		require.NoError(t, err)
		require.True(t, p.IsAdmin())

		require.NoError(t, h.app.EnsureAdmin(ctx, "admin@example.com", "admin password 1"))
		again, err := h.users.UserByEmail(ctx, "admin@example.com")
		require.NoError(t, err)
		require.Equal(t, admin, again, "a second run changes nothing")
		_, err = h.app.Refresh(ctx, pair.RefreshToken)
		require.NoError(t, err, "and keeps the admin's sessions")

		require.NoError(t, h.app.EnsureAdmin(ctx, "admin@example.com", "admin password 2"))
		_, err = h.app.Login(ctx, "admin@example.com", "admin password 1", "")
		require.ErrorIs(t, err, domain.ErrInvalidCredentials, "the old password is gone")
		_, err = h.app.Login(ctx, "admin@example.com", "admin password 2", "")
		require.NoError(t, err)
	})
}

func TestEnsureAdminTakesOverARegisteredAccount(t *testing.T) {
	h := sqliteHarness(t, harnessOptions{})
	ctx := t.Context()
	squatter := h.register(t, "boss@example.com")
	squatterPair := h.login(t, "boss@example.com")

	require.NoError(t, h.app.EnsureAdmin(ctx, "boss@example.com", "the real admin password"))

	got, err := h.users.UserByID(ctx, squatter.ID)
	require.NoError(t, err)
	require.Equal(t, domain.RoleAdmin, got.Role)
	_, err = h.app.Refresh(ctx, squatterPair.RefreshToken)
	require.ErrorIs(t, err, domain.ErrRefreshTokenInvalid, "whoever registered the address first cannot refresh into an admin session")
	_, err = h.app.Login(ctx, "boss@example.com", password, "")
	require.ErrorIs(t, err, domain.ErrInvalidCredentials)

	require.ErrorIs(t, h.app.EnsureAdmin(ctx, "not-an-email", "the real admin password"), domain.ErrEmailInvalid)
	require.ErrorIs(t, h.app.EnsureAdmin(ctx, "boss@example.com", "short"), domain.ErrPasswordShort)
}

func TestLoginRateLimit(t *testing.T) {
	h := sqliteHarness(t, harnessOptions{emailPerMinute: 5, ipPerMinute: 20})
	ctx := t.Context()
	h.register(t, "ann@example.com")

	for range 5 {
		_, err := h.app.Login(ctx, "ann@example.com", "wrong password", "192.0.2.1")
		require.ErrorIs(t, err, domain.ErrInvalidCredentials)
	}
	_, err := h.app.Login(ctx, "ann@example.com", password, "192.0.2.99")
	require.ErrorIs(t, err, domain.ErrTooManyLogins, "the sixth attempt for one email is refused, from any address")
	require.Equal(t, apperr.TooManyRequests, apperr.KindOf(err))
	require.Equal(t, "too many login attempts", err.Error())
	var limited *app.RateLimitedError
	require.ErrorAs(t, err, &limited)
	require.InDelta(t, 12*time.Second, limited.RetryAfter, float64(time.Second))

	_, err = h.app.Login(ctx, "ANN@example.com", password, "192.0.2.99")
	require.ErrorIs(t, err, domain.ErrTooManyLogins, "spelling variants share the limit")

	h.clock.Advance(limited.RetryAfter)
	_, err = h.app.Login(ctx, "ann@example.com", password, "192.0.2.1")
	require.NoError(t, err, "after Retry-After an attempt is allowed again")

	// Per IP: many emails from one address.
	for i := range 20 {
		_, err := h.app.Login(ctx, "user"+string(rune('a'+i))+"@example.com", password, "198.51.100.7")
		require.ErrorIs(t, err, domain.ErrInvalidCredentials)
	}
	_, err = h.app.Login(ctx, "someone-new@example.com", password, "198.51.100.7")
	require.ErrorIs(t, err, domain.ErrTooManyLogins)
	_, err = h.app.Login(ctx, "someone-new@example.com", password, "198.51.100.8")
	require.ErrorIs(t, err, domain.ErrInvalidCredentials, "another address is not limited, and the refused attempt did not count for the email")
}

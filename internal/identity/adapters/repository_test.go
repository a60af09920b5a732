package adapters_test

import (
	"bytes"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/identity"
	"github.com/mercato-dev/mercato/internal/identity/adapters"
	"github.com/mercato-dev/mercato/internal/identity/domain"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
	"github.com/mercato-dev/mercato/internal/platform/events"
)

// t0 is a fixed instant with sub-microsecond digits, to check what survives
// a round trip.
var t0 = time.Date(2030, 3, 4, 5, 6, 7, 891011121, time.UTC)

// forEachEngine runs test against a freshly migrated database on SQLite and
// on PostgreSQL.
func forEachEngine(t *testing.T, test func(t *testing.T, d *db.DB)) {
	t.Helper()
	for _, engine := range dbtest.Engines(t) {
		t.Run(engine.Name, func(t *testing.T) {
			require.NoError(t, identity.Migrate(t.Context(), db.Config{URL: engine.URL}))
			require.NoError(t, identity.Migrate(t.Context(), db.Config{URL: engine.URL}), "migrating twice changes nothing")
			test(t, dbtest.Open(t, engine.URL))
		})
	}
}

func newUser(email string) domain.User {
	return domain.User{
		ID: uuid.NewString(), Email: email, Name: "Ann", Role: domain.RoleCustomer,
		PasswordHash: "$argon2id$fake", CreatedAt: t0, UpdatedAt: t0,
	}
}

func TestUserRepository(t *testing.T) {
	forEachEngine(t, func(t *testing.T, d *db.DB) {
		ctx := t.Context()
		users := adapters.NewUserRepository(d, events.NewOutbox(d))

		t.Run("create and read back", func(t *testing.T) {
			u := newUser("ann@example.com")
			ev := events.Event{ID: uuid.NewString(), Subject: domain.SubjectUserRegistered, Payload: []byte(`{"user_id":"` + u.ID + `"}`)}
			require.NoError(t, users.CreateUser(ctx, u, ev))

			want := u
			want.CreatedAt, want.UpdatedAt = t0.Truncate(time.Microsecond), t0.Truncate(time.Microsecond)
			got, err := users.UserByEmail(ctx, "ann@example.com")
			require.NoError(t, err)
			require.Equal(t, want, got)
			got, err = users.UserByID(ctx, u.ID)
			require.NoError(t, err)
			require.Equal(t, want, got)

			var subject string
			var payload []byte
			require.NoError(t, d.QueryRowContext(ctx, `SELECT subject, payload FROM outbox WHERE event_id = $1`, ev.ID).Scan(&subject, &payload))
			require.Equal(t, domain.SubjectUserRegistered, subject)
			require.JSONEq(t, string(ev.Payload), string(payload))
		})

		t.Run("email taken: nothing stored, no event", func(t *testing.T) {
			dup := newUser("ann@example.com")
			ev := events.Event{ID: uuid.NewString(), Subject: domain.SubjectUserRegistered, Payload: []byte(`{}`)}
			require.ErrorIs(t, users.CreateUser(ctx, dup, ev), domain.ErrEmailTaken)

			_, err := users.UserByID(ctx, dup.ID)
			require.ErrorIs(t, err, domain.ErrUserNotFound)
			var n int
			require.NoError(t, d.QueryRowContext(ctx, `SELECT count(*) FROM outbox WHERE event_id = $1`, ev.ID).Scan(&n))
			require.Zero(t, n, "the event of a failed registration is not published")
		})

		t.Run("not found", func(t *testing.T) {
			_, err := users.UserByEmail(ctx, "nobody@example.com")
			require.ErrorIs(t, err, domain.ErrUserNotFound)
			_, err = users.UserByID(ctx, uuid.NewString())
			require.ErrorIs(t, err, domain.ErrUserNotFound)
			require.ErrorIs(t, users.SetPasswordHash(ctx, uuid.NewString(), "x", t0), domain.ErrUserNotFound)
			require.ErrorIs(t, users.SetCredentials(ctx, uuid.NewString(), "x", domain.RoleAdmin, t0), domain.ErrUserNotFound)
		})

		t.Run("set credentials revokes sessions", func(t *testing.T) {
			sessions := adapters.NewSessionRepository(d)
			u := newUser("bob@example.com")
			require.NoError(t, users.CreateUser(ctx, u))
			fam, tok := newSession(u.ID, t0)
			require.NoError(t, sessions.CreateSession(ctx, fam, tok))

			later := t0.Add(time.Hour)
			require.NoError(t, users.SetCredentials(ctx, u.ID, "$argon2id$new", domain.RoleAdmin, later))

			got, err := users.UserByID(ctx, u.ID)
			require.NoError(t, err)
			require.Equal(t, domain.RoleAdmin, got.Role)
			require.Equal(t, "$argon2id$new", got.PasswordHash)
			require.Equal(t, later.Truncate(time.Microsecond), got.UpdatedAt)
			_, err = sessions.RotateRefreshToken(ctx, tok.Hash, nextToken(later), later)
			require.ErrorIs(t, err, domain.ErrRefreshTokenInvalid)
		})

		t.Run("set password hash", func(t *testing.T) {
			u := newUser("cid@example.com")
			require.NoError(t, users.CreateUser(ctx, u))
			require.NoError(t, users.SetPasswordHash(ctx, u.ID, "$argon2id$rehashed", t0))
			got, err := users.UserByID(ctx, u.ID)
			require.NoError(t, err)
			require.Equal(t, "$argon2id$rehashed", got.PasswordHash)
			require.Equal(t, domain.RoleCustomer, got.Role)
		})
	})
}

func newSession(userID string, now time.Time) (domain.RefreshFamily, domain.RefreshToken) {
	_, hash := domain.NewRefreshSecret()
	fam := domain.RefreshFamily{ID: uuid.NewString(), UserID: userID, CreatedAt: now}
	return fam, domain.RefreshToken{Hash: hash, FamilyID: fam.ID, UserID: userID, CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)}
}

func nextToken(now time.Time) domain.RefreshToken {
	_, hash := domain.NewRefreshSecret()
	return domain.RefreshToken{Hash: hash, CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)}
}

func TestSessionRepository(t *testing.T) {
	forEachEngine(t, func(t *testing.T, d *db.DB) {
		ctx := t.Context()
		users := adapters.NewUserRepository(d, events.NewOutbox(d))
		sessions := adapters.NewSessionRepository(d)
		u := newUser("ann@example.com")
		require.NoError(t, users.CreateUser(ctx, u))

		t.Run("rotation chain", func(t *testing.T) {
			fam, first := newSession(u.ID, t0)
			require.NoError(t, sessions.CreateSession(ctx, fam, first))

			second := nextToken(t0.Add(time.Minute))
			old, err := sessions.RotateRefreshToken(ctx, first.Hash, second, t0.Add(time.Minute))
			require.NoError(t, err)
			require.Equal(t, fam.ID, old.FamilyID)
			require.Equal(t, u.ID, old.UserID)

			third := nextToken(t0.Add(2 * time.Minute))
			_, err = sessions.RotateRefreshToken(ctx, second.Hash, third, t0.Add(2*time.Minute))
			require.NoError(t, err, "the token handed out by a rotation is usable")

			got, err := sessions.Family(ctx, fam.ID)
			require.NoError(t, err)
			require.True(t, got.RevokedAt.IsZero())
		})

		t.Run("reuse revokes the family, newest token included", func(t *testing.T) {
			fam, first := newSession(u.ID, t0)
			require.NoError(t, sessions.CreateSession(ctx, fam, first))
			second := nextToken(t0)
			_, err := sessions.RotateRefreshToken(ctx, first.Hash, second, t0)
			require.NoError(t, err)

			old, err := sessions.RotateRefreshToken(ctx, first.Hash, nextToken(t0), t0.Add(time.Minute))
			require.ErrorIs(t, err, domain.ErrRefreshTokenReused)
			require.Equal(t, fam.ID, old.FamilyID)

			got, err := sessions.Family(ctx, fam.ID)
			require.NoError(t, err)
			require.Equal(t, t0.Add(time.Minute).Truncate(time.Microsecond), got.RevokedAt, "the revocation is committed")
			_, err = sessions.RotateRefreshToken(ctx, second.Hash, nextToken(t0), t0.Add(2*time.Minute))
			require.ErrorIs(t, err, domain.ErrRefreshTokenInvalid)
		})

		t.Run("unknown and expired tokens", func(t *testing.T) {
			_, unknown := domain.NewRefreshSecret()
			_, err := sessions.RotateRefreshToken(ctx, unknown, nextToken(t0), t0)
			require.ErrorIs(t, err, domain.ErrRefreshTokenInvalid)

			fam, first := newSession(u.ID, t0)
			require.NoError(t, sessions.CreateSession(ctx, fam, first))
			_, err = sessions.RotateRefreshToken(ctx, first.Hash, nextToken(t0), first.ExpiresAt)
			require.ErrorIs(t, err, domain.ErrRefreshTokenInvalid)
			got, err := sessions.Family(ctx, fam.ID)
			require.NoError(t, err)
			require.True(t, got.RevokedAt.IsZero(), "an expired token does not revoke anything")
		})

		t.Run("concurrent exchanges of one token: exactly one wins", func(t *testing.T) {
			fam, first := newSession(u.ID, t0)
			require.NoError(t, sessions.CreateSession(ctx, fam, first))
			const n = 8
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					_, errs[i] = sessions.RotateRefreshToken(ctx, first.Hash, nextToken(t0), t0)
				})
			}
			wg.Wait()
			wins := 0
			for _, err := range errs {
				if err == nil {
					wins++
					continue
				}
				require.ErrorIs(t, err, domain.ErrRefreshTokenReused)
			}
			require.Equal(t, 1, wins)
			var tokens int
			require.NoError(t, d.QueryRowContext(ctx, `SELECT count(*) FROM refresh_tokens WHERE family_id = $1`, fam.ID).Scan(&tokens))
			require.Equal(t, 2, tokens, "exactly one successor token was stored")
		})

		t.Run("revoke session only for its owner", func(t *testing.T) {
			fam, first := newSession(u.ID, t0)
			require.NoError(t, sessions.CreateSession(ctx, fam, first))

			revoked, err := sessions.RevokeSession(ctx, first.Hash, uuid.NewString(), t0)
			require.NoError(t, err)
			require.False(t, revoked, "someone else's token is left alone")
			_, unknown := domain.NewRefreshSecret()
			revoked, err = sessions.RevokeSession(ctx, unknown, u.ID, t0)
			require.NoError(t, err)
			require.False(t, revoked)

			revoked, err = sessions.RevokeSession(ctx, first.Hash, u.ID, t0)
			require.NoError(t, err)
			require.True(t, revoked)
			revoked, err = sessions.RevokeSession(ctx, first.Hash, u.ID, t0)
			require.NoError(t, err)
			require.False(t, revoked, "already revoked")
			_, err = sessions.RotateRefreshToken(ctx, first.Hash, nextToken(t0), t0)
			require.ErrorIs(t, err, domain.ErrRefreshTokenInvalid)
		})

		t.Run("prune expired", func(t *testing.T) {
			later := t0.Add(1000 * time.Hour)
			fam, live := newSession(u.ID, later)
			require.NoError(t, sessions.CreateSession(ctx, fam, live))

			n, err := sessions.PruneExpired(ctx, later)
			require.NoError(t, err)
			require.Positive(t, n)
			var families int
			require.NoError(t, d.QueryRowContext(ctx, `SELECT count(*) FROM refresh_families`).Scan(&families))
			require.Equal(t, 1, families, "only the live family is left")
			_, err = sessions.RotateRefreshToken(ctx, live.Hash, nextToken(later), later)
			require.NoError(t, err)
		})
	})
}

func TestSigningKeyRepository(t *testing.T) {
	forEachEngine(t, func(t *testing.T, d *db.DB) {
		ctx := t.Context()
		keys := adapters.NewSigningKeyRepository(d)
		policy := domain.KeyPolicy{RotationInterval: time.Hour, PublishLead: 10 * time.Minute, TokenLifetime: 16 * time.Minute}

		got, err := keys.SigningKeys(ctx)
		require.NoError(t, err)
		require.Empty(t, got)

		plan := policy.Plan(nil, t0)
		first, err := domain.NewSigningKey(plan.Generation, t0, plan.ActivatesAt)
		require.NoError(t, err)
		applied, err := keys.ApplyRotation(ctx, plan, &first)
		require.NoError(t, err)
		require.True(t, applied)

		rival, err := domain.NewSigningKey(plan.Generation, t0, plan.ActivatesAt)
		require.NoError(t, err)
		applied, err = keys.ApplyRotation(ctx, plan, &rival)
		require.NoError(t, err)
		require.False(t, applied, "a second replica's rotation of the same generation is refused")

		got, err = keys.SigningKeys(ctx)
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.Equal(t, first.ID, got[0].ID)
		require.True(t, bytes.Equal(first.PrivateKey, got[0].PrivateKey))
		require.Equal(t, t0.Truncate(time.Microsecond), got[0].ActivatesAt)
		require.True(t, got[0].RetiresAt.IsZero())

		now := t0.Add(50 * time.Minute) // exactly one publish lead before the hour is up
		plan = policy.Plan(got, now)
		require.True(t, plan.Create)
		second, err := domain.NewSigningKey(plan.Generation, now, plan.ActivatesAt)
		require.NoError(t, err)
		applied, err = keys.ApplyRotation(ctx, plan, &second)
		require.NoError(t, err)
		require.True(t, applied)

		got, err = keys.SigningKeys(ctx)
		require.NoError(t, err)
		require.Len(t, got, 2)
		require.Equal(t, t0.Add(time.Hour).Truncate(time.Microsecond), got[0].RetiresAt, "the old key retires when the new one activates")
		require.Equal(t, second.ID, got[1].ID)

		plan = policy.Plan(got, t0.Add(time.Hour+policy.TokenLifetime))
		require.Equal(t, []string{first.ID}, plan.Prune)
		applied, err = keys.ApplyRotation(ctx, plan, nil)
		require.NoError(t, err)
		require.True(t, applied)
		got, err = keys.SigningKeys(ctx)
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.Equal(t, second.ID, got[0].ID)

		// The newest key is never deleted, whatever a plan says.
		applied, err = keys.ApplyRotation(ctx, domain.RotationPlan{Prune: []string{second.ID}}, nil)
		require.NoError(t, err)
		require.True(t, applied)
		got, err = keys.SigningKeys(ctx)
		require.NoError(t, err)
		require.Len(t, got, 1)
	})
}

func TestUserRegisteredPayload(t *testing.T) {
	u := newUser("ann@example.com")
	payload, err := domain.UserRegisteredPayload(u)
	require.NoError(t, err)
	var got map[string]any
	require.NoError(t, json.Unmarshal(payload, &got))
	require.Equal(t, map[string]any{
		"user_id": u.ID, "email": "ann@example.com", "name": "Ann", "registered_at": t0.Format(time.RFC3339Nano),
	}, got)
}

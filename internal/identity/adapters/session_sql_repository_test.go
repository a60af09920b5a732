package adapters_test

import (
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/identity/adapters"
	"github.com/mercato-dev/mercato/internal/identity/domain"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/events"
)

func newSession(userID string, now time.Time) (domain.RefreshFamily, domain.RefreshToken) {
	_, hash := domain.NewRefreshSecret()
	fam := domain.RefreshFamily{ID: uuid.NewString(), UserID: userID, CreatedAt: now}
	return fam, domain.RefreshToken{Hash: hash, FamilyID: fam.ID, UserID: userID, CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)}
}

func nextToken(now time.Time) domain.RefreshToken {
	_, hash := domain.NewRefreshSecret()
	return domain.RefreshToken{Hash: hash, CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)}
}

func TestSessionSQLRepository(t *testing.T) {
	forEachEngine(t, func(t *testing.T, d *db.DB) {
		ctx := t.Context()
		users := adapters.NewUserSQLRepository(d, events.NewOutbox(d))
		sessions := adapters.NewSessionSQLRepository(d)
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

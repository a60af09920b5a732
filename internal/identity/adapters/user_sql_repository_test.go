package adapters_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/identity/adapters"
	"github.com/mercato-dev/mercato/internal/identity/domain"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/events"
)

func TestUserSQLRepository(t *testing.T) {
	forEachEngine(t, func(t *testing.T, d *db.DB) {
		ctx := t.Context()
		users := adapters.NewUserSQLRepository(d, events.NewOutbox(d))

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
			sessions := adapters.NewSessionSQLRepository(d)
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

package adapters_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/identity/adapters"
	"github.com/mercato-dev/mercato/internal/identity/domain"
	"github.com/mercato-dev/mercato/internal/platform/db"
)

func TestSigningKeySQLRepository(t *testing.T) {
	forEachEngine(t, func(t *testing.T, d *db.DB) {
		ctx := t.Context()
		keys := adapters.NewSigningKeySQLRepository(d)
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

package domain_test

import (
	"crypto/sha256"
	"encoding/base64"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/identity/domain"
)

func TestRefreshSecrets(t *testing.T) {
	secret, hash := domain.NewRefreshSecret()
	raw, err := base64.RawURLEncoding.DecodeString(secret)
	require.NoError(t, err)
	require.Len(t, raw, 32)
	sum := sha256.Sum256([]byte(secret))
	require.Equal(t, sum[:], hash)
	require.Equal(t, hash, domain.HashRefreshSecret(secret))

	other, _ := domain.NewRefreshSecret()
	require.NotEqual(t, secret, other)

	for _, bad := range []string{"", "short", secret + "x", secret[:42] + "!", secret[:42] + "="} {
		require.Nil(t, domain.HashRefreshSecret(bad), "%q", bad)
	}
}

func TestRefreshTokenCheckUsable(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		tok  domain.RefreshToken
		err  error
	}{
		{"fresh", domain.RefreshToken{ExpiresAt: now.Add(time.Hour)}, nil},
		{"expires now", domain.RefreshToken{ExpiresAt: now}, domain.ErrRefreshTokenInvalid},
		{"expired", domain.RefreshToken{ExpiresAt: now.Add(-time.Hour)}, domain.ErrRefreshTokenInvalid},
		{"used", domain.RefreshToken{ExpiresAt: now.Add(time.Hour), UsedAt: now.Add(-time.Minute)}, domain.ErrRefreshTokenReused},
		{"used and expired", domain.RefreshToken{ExpiresAt: now.Add(-time.Hour), UsedAt: now.Add(-2 * time.Hour)}, domain.ErrRefreshTokenReused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.ErrorIs(t, tt.tok.CheckUsable(now), tt.err)
		})
	}
}

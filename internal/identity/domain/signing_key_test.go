package domain_test

import (
	"crypto"
	"encoding/base64"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/identity/domain"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

var policy = domain.KeyPolicy{RotationInterval: 24 * time.Hour, PublishLead: 10 * time.Minute, TokenLifetime: 16 * time.Minute}

func key(t *testing.T, gen int64, activates time.Time, retires time.Time) domain.SigningKey {
	t.Helper()
	k, err := domain.NewSigningKey(gen, activates.Add(-time.Hour), activates)
	require.NoError(t, err)
	k.RetiresAt = retires
	return k
}

func TestSigningKeyJWK(t *testing.T) {
	k, err := domain.NewSigningKey(1, t0, t0)
	require.NoError(t, err)
	jwk := k.JWK()

	require.Equal(t, "OKP", jwk.Kty)
	require.Equal(t, "Ed25519", jwk.Crv)
	require.Equal(t, "EdDSA", jwk.Alg)
	require.Equal(t, "sig", jwk.Use)
	require.Equal(t, k.ID, jwk.Kid)
	x, err := base64.RawURLEncoding.DecodeString(jwk.X)
	require.NoError(t, err)
	require.Equal(t, []byte(k.PublicKey()), x)

	// The kid is the RFC 7638 thumbprint, as an independent implementation computes it.
	want, err := (&jose.JSONWebKey{Key: k.PublicKey()}).Thumbprint(crypto.SHA256)
	require.NoError(t, err)
	require.Equal(t, base64.RawURLEncoding.EncodeToString(want), k.ID)

	again, err := domain.SigningKeyFromSeed(k.PrivateKey.Seed(), 1, t0, t0)
	require.NoError(t, err)
	require.Equal(t, k.ID, again.ID)
	require.True(t, k.PublicKey().Equal(again.PublicKey()))

	_, err = domain.SigningKeyFromSeed([]byte("short"), 1, t0, t0)
	require.Error(t, err)
}

func TestKeyPolicyPlan(t *testing.T) {
	a := key(t, 1, t0, time.Time{})
	due := t0.Add(policy.RotationInterval)
	b := key(t, 2, due, time.Time{})
	aRetired := a
	aRetired.RetiresAt = due

	tests := []struct {
		name string
		keys []domain.SigningKey
		now  time.Time
		want domain.RotationPlan
	}{
		{"first key signs at once", nil, t0,
			domain.RotationPlan{Create: true, Generation: 1, ActivatesAt: t0}},
		{"nothing due", []domain.SigningKey{a}, t0.Add(time.Hour), domain.RotationPlan{}},
		{"just before the publish lead", []domain.SigningKey{a}, due.Add(-policy.PublishLead - time.Second), domain.RotationPlan{}},
		{"successor published one lead ahead", []domain.SigningKey{a}, due.Add(-policy.PublishLead),
			domain.RotationPlan{Create: true, Generation: 2, ActivatesAt: due, Retire: a.ID}},
		{"after downtime the successor still waits a full lead", []domain.SigningKey{a}, due.Add(48 * time.Hour),
			domain.RotationPlan{Create: true, Generation: 2, ActivatesAt: due.Add(48*time.Hour + policy.PublishLead), Retire: a.ID}},
		{"a waiting successor is not doubled", []domain.SigningKey{aRetired, b}, due.Add(-time.Minute), domain.RotationPlan{}},
		{"retired key kept while its tokens live", []domain.SigningKey{aRetired, b}, due.Add(policy.TokenLifetime - time.Second), domain.RotationPlan{}},
		{"retired key pruned once its tokens expired", []domain.SigningKey{aRetired, b}, due.Add(policy.TokenLifetime),
			domain.RotationPlan{Prune: []string{a.ID}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, policy.Plan(tt.keys, tt.now))
		})
	}

	t.Run("no rotation interval never rotates", func(t *testing.T) {
		p := policy
		p.RotationInterval = 0
		require.Equal(t, domain.RotationPlan{}, p.Plan([]domain.SigningKey{a}, t0.Add(1000*time.Hour)))
	})
}

func TestKeyPolicySigningAndPublished(t *testing.T) {
	due := t0.Add(policy.RotationInterval)
	a := key(t, 1, t0, due)
	b := key(t, 2, due, time.Time{})
	keys := []domain.SigningKey{a, b}

	tests := []struct {
		name      string
		now       time.Time
		signer    string
		published []string
	}{
		{"successor published, not signing", due.Add(-time.Minute), a.ID, []string{b.ID, a.ID}},
		{"successor signs at its activation", due, b.ID, []string{b.ID, a.ID}},
		{"retired key published until its tokens expire", due.Add(policy.TokenLifetime - time.Second), b.ID, []string{b.ID, a.ID}},
		{"then withdrawn", due.Add(policy.TokenLifetime), b.ID, []string{b.ID}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			signer, ok := policy.Signing(keys, tt.now)
			require.True(t, ok)
			require.Equal(t, tt.signer, signer.ID)
			var ids []string
			for _, k := range policy.Published(keys, tt.now) {
				ids = append(ids, k.ID)
			}
			require.Equal(t, tt.published, ids)
		})
	}

	t.Run("no keys, no signer", func(t *testing.T) {
		_, ok := policy.Signing(nil, t0)
		require.False(t, ok)
	})
	t.Run("first key of a replica whose clock is ahead", func(t *testing.T) {
		first := key(t, 1, t0.Add(2*time.Second), time.Time{})
		signer, ok := policy.Signing([]domain.SigningKey{first}, t0)
		require.True(t, ok)
		require.Equal(t, first.ID, signer.ID)
	})
	t.Run("a later generation never signs before it activates", func(t *testing.T) {
		_, ok := policy.Signing([]domain.SigningKey{key(t, 2, t0.Add(time.Minute), time.Time{})}, t0)
		require.False(t, ok)
	})
}

package domain

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"time"
)

// refreshSecretBytes is the entropy of a refresh token.
const refreshSecretBytes = 32

// RefreshToken is one link of a refresh-token family. Only the SHA-256 of
// the secret is kept, so a copy of the database cannot be replayed.
type RefreshToken struct {
	Hash      []byte
	FamilyID  string
	UserID    string
	CreatedAt time.Time
	ExpiresAt time.Time
	// UsedAt is when the token was exchanged for the next one; zero while
	// it is the family's current token.
	UsedAt time.Time
}

// RefreshFamily is the chain of refresh tokens descending from one login.
// Revoking it makes every token in it, present and future, unusable.
type RefreshFamily struct {
	ID        string
	UserID    string
	CreatedAt time.Time
	// RevokedAt is zero while the family is live.
	RevokedAt time.Time
}

// NewRefreshSecret returns a fresh opaque token (32 random bytes,
// base64url) and the hash to store.
func NewRefreshSecret() (secret string, hash []byte) {
	buf := make([]byte, refreshSecretBytes)
	_, _ = rand.Read(buf) // never fails (crypto/rand panics instead)
	secret = base64.RawURLEncoding.EncodeToString(buf)
	return secret, HashRefreshSecret(secret)
}

// HashRefreshSecret returns the stored form of a token, or nil when secret
// cannot be one we issued (so it is not looked up at all).
func HashRefreshSecret(secret string) []byte {
	if len(secret) != base64.RawURLEncoding.EncodedLen(refreshSecretBytes) {
		return nil
	}
	if _, err := base64.RawURLEncoding.DecodeString(secret); err != nil {
		return nil
	}
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// CheckUsable says whether t may be exchanged at now: ErrRefreshTokenReused
// when it was exchanged before, ErrRefreshTokenInvalid when it expired.
func (t RefreshToken) CheckUsable(now time.Time) error {
	if !t.UsedAt.IsZero() {
		return ErrRefreshTokenReused
	}
	if !now.Before(t.ExpiresAt) {
		return ErrRefreshTokenInvalid
	}
	return nil
}

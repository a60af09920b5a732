package domain

import (
	"cmp"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"slices"
	"time"
)

// Parameters of published keys (RFC 8037: Ed25519 as an OKP key for EdDSA).
const (
	KeyType      = "OKP"
	KeyCurve     = "Ed25519"
	KeyAlgorithm = "EdDSA"
	KeyUse       = "sig"
)

// SigningKey is an Ed25519 key that signs access tokens during its
// lifetime. Its life has three stages, all decided by times stored with it,
// so every replica reading the same rows reaches the same conclusions:
//
//   - published, not yet signing: from CreatedAt until ActivatesAt, so
//     verifiers have fetched it before the first token it signs arrives;
//   - signing: from ActivatesAt until RetiresAt (zero: until a successor is
//     planned), the newest active key signs;
//   - retired: still published until every token it signed has expired.
type SigningKey struct {
	// ID is the kid: the RFC 7638 thumbprint of the public key.
	ID string
	// Generation orders keys; each rotation adds one. It is unique, which
	// is what stops two replicas from rotating at the same moment.
	Generation  int64
	PrivateKey  ed25519.PrivateKey
	CreatedAt   time.Time
	ActivatesAt time.Time
	RetiresAt   time.Time
}

// NewSigningKey generates a key of the given generation.
func NewSigningKey(generation int64, createdAt, activatesAt time.Time) (SigningKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return SigningKey{}, fmt.Errorf("generate signing key: %w", err)
	}
	return SigningKeyFromSeed(priv.Seed(), generation, createdAt, activatesAt)
}

// SigningKeyFromSeed rebuilds a key from its 32-byte seed (how it is stored).
func SigningKeyFromSeed(seed []byte, generation int64, createdAt, activatesAt time.Time) (SigningKey, error) {
	if len(seed) != ed25519.SeedSize {
		return SigningKey{}, fmt.Errorf("signing key seed has %d bytes, want %d", len(seed), ed25519.SeedSize)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	return SigningKey{
		ID:          Thumbprint(priv.Public().(ed25519.PublicKey)),
		Generation:  generation,
		PrivateKey:  priv,
		CreatedAt:   createdAt,
		ActivatesAt: activatesAt,
	}, nil
}

// PublicKey returns the key that verifies this key's signatures.
func (k SigningKey) PublicKey() ed25519.PublicKey { return k.PrivateKey.Public().(ed25519.PublicKey) }

// JWK is the public half of a signing key as published in a JWKS.
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// JWK returns the key's public JWK.
func (k SigningKey) JWK() JWK {
	return JWK{
		Kty: KeyType, Crv: KeyCurve, Kid: k.ID, Alg: KeyAlgorithm, Use: KeyUse,
		X: base64.RawURLEncoding.EncodeToString(k.PublicKey()),
	}
}

// Thumbprint is the RFC 7638 JWK thumbprint (SHA-256, base64url) of an
// Ed25519 public key: a stable kid derived from the key itself.
func Thumbprint(pub ed25519.PublicKey) string {
	// Members in lexicographic order, no whitespace, as RFC 7638 requires.
	canonical := `{"crv":"` + KeyCurve + `","kty":"` + KeyType + `","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`
	sum := sha256.Sum256([]byte(canonical))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// KeyPolicy decides which keys sign, which are published and when to rotate.
type KeyPolicy struct {
	// RotationInterval is how long a key signs before its successor takes
	// over; zero or less never rotates.
	RotationInterval time.Duration
	// PublishLead is how long a new key is published before it signs. It
	// must exceed how long verifiers cache the key set.
	PublishLead time.Duration
	// TokenLifetime is how long a token stays acceptable after it is
	// signed (access-token lifetime plus verifiers' leeway): how long a
	// retired key stays published.
	TokenLifetime time.Duration
}

// Signing returns the key that signs at now: the newest key that has
// activated and not retired. ok is false only when there are no keys.
func (p KeyPolicy) Signing(keys []SigningKey, now time.Time) (key SigningKey, ok bool) {
	for _, k := range keys {
		if k.ActivatesAt.After(now) || (!k.RetiresAt.IsZero() && !now.Before(k.RetiresAt)) {
			continue
		}
		if !ok || k.Generation > key.Generation {
			key, ok = k, true
		}
	}
	if ok {
		return key, true
	}
	// Nothing has activated by this clock: a brand-new install whose first
	// key was made by a replica whose clock runs slightly ahead. No verifier
	// can have cached a key set without it, so signing with it is safe.
	for _, k := range keys {
		if !ok || k.Generation < key.Generation {
			key, ok = k, true
		}
	}
	if ok && key.Generation != 1 {
		return SigningKey{}, false
	}
	return key, ok
}

// Published returns the keys a verifier must know at now, newest first:
// those about to sign, the one signing, and retired ones whose tokens may
// still be unexpired.
func (p KeyPolicy) Published(keys []SigningKey, now time.Time) []SigningKey {
	var out []SigningKey
	for _, k := range keys {
		if p.expired(k, now) {
			continue
		}
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b SigningKey) int { return cmp.Compare(b.Generation, a.Generation) })
	return out
}

func (p KeyPolicy) expired(k SigningKey, now time.Time) bool {
	return !k.RetiresAt.IsZero() && !now.Before(k.RetiresAt.Add(p.TokenLifetime))
}

// RotationPlan is what Plan decides: optionally a new key generation that
// activates at ActivatesAt while the current newest key (Retire) retires at
// that moment, and keys to delete because nothing they signed is still valid.
type RotationPlan struct {
	Create      bool
	Generation  int64
	ActivatesAt time.Time
	// Retire is the kid of the key the new one replaces; empty when there
	// is none (the first key).
	Retire string
	Prune  []string
}

// Plan decides what rotation work is due at now. The first key signs at
// once; each later one is created PublishLead before its predecessor's
// RotationInterval is up (or now plus PublishLead if that moment has
// passed, after downtime), so it is always published before it signs, and
// there is always exactly one signing key.
func (p KeyPolicy) Plan(keys []SigningKey, now time.Time) RotationPlan {
	var plan RotationPlan
	for _, k := range keys {
		if p.expired(k, now) {
			plan.Prune = append(plan.Prune, k.ID)
		}
	}
	if len(keys) == 0 {
		return RotationPlan{Create: true, Generation: 1, ActivatesAt: now}
	}
	newest := slices.MaxFunc(keys, func(a, b SigningKey) int { return cmp.Compare(a.Generation, b.Generation) })
	if p.RotationInterval <= 0 || newest.ActivatesAt.After(now) || !newest.RetiresAt.IsZero() {
		return plan // no rotation, or a successor is already waiting
	}
	due := newest.ActivatesAt.Add(p.RotationInterval)
	if now.Before(due.Add(-p.PublishLead)) {
		return plan
	}
	activates := due
	if earliest := now.Add(p.PublishLead); activates.Before(earliest) {
		activates = earliest
	}
	plan.Create, plan.Generation, plan.ActivatesAt, plan.Retire = true, newest.Generation+1, activates, newest.ID
	return plan
}

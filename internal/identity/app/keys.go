package app

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/mercato-dev/mercato/internal/identity/domain"
	"github.com/mercato-dev/mercato/internal/platform/auth"
)

// SigningKeyRepository is where signing keys live; every replica shares it.
type SigningKeyRepository interface {
	// SigningKeys returns every stored key.
	SigningKeys(ctx context.Context) ([]domain.SigningKey, error)
	// ApplyRotation stores plan's outcome (next is the new key, or nil) in
	// one transaction and reports false, storing nothing, when another
	// process applied a rotation of the same generation first.
	ApplyRotation(ctx context.Context, plan domain.RotationPlan, next *domain.SigningKey) (bool, error)
}

// missReloadInterval throttles reloads caused by tokens with an unknown
// kid, so forged kids cannot turn into a query per request.
const missReloadInterval = 5 * time.Second

// KeyRing is this replica's view of the signing keys: it picks the key
// that signs, lists the keys to publish, verifies identity's own tokens
// (it is an auth.KeySource) and carries out rotation. The database is the
// truth; the ring reloads it on every Rotate and, for an unknown kid, at
// most every few seconds. It is safe for concurrent use.
type KeyRing struct {
	repo   SigningKeyRepository
	policy domain.KeyPolicy
	now    func() time.Time
	log    *slog.Logger

	mu         sync.RWMutex
	keys       []domain.SigningKey
	lastReload time.Time
	// missMu lets one unknown-kid reload run at a time; the others then
	// find the result fresh.
	missMu sync.Mutex
}

// NewKeyRing returns a ring over repo following policy. It knows no keys
// until Rotate or Reload succeeds. A nil logger discards; a nil now uses
// time.Now.
func NewKeyRing(repo SigningKeyRepository, policy domain.KeyPolicy, logger *slog.Logger, now func() time.Time) *KeyRing {
	if now == nil {
		now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &KeyRing{repo: repo, policy: policy, now: now, log: logger}
}

// Reload reads the keys from the repository.
func (r *KeyRing) Reload(ctx context.Context) error {
	keys, err := r.repo.SigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("reload signing keys: %w", err)
	}
	r.mu.Lock()
	r.keys, r.lastReload = keys, r.now()
	r.mu.Unlock()
	return nil
}

// Rotate does whatever rotation work is due now (create the first key,
// publish a successor ahead of time, delete keys nothing valid was signed
// with) and reloads. Replicas may call it at the same time: one of them
// makes each change.
func (r *KeyRing) Rotate(ctx context.Context) error {
	keys, err := r.repo.SigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("read signing keys: %w", err)
	}
	now := r.now().UTC()
	plan := r.policy.Plan(keys, now)
	if plan.Create || len(plan.Prune) > 0 {
		var next *domain.SigningKey
		if plan.Create {
			k, err := domain.NewSigningKey(plan.Generation, now, plan.ActivatesAt)
			if err != nil {
				return err
			}
			next = &k
		}
		applied, err := r.repo.ApplyRotation(ctx, plan, next)
		if err != nil {
			return fmt.Errorf("rotate signing keys: %w", err)
		}
		switch {
		case !applied:
			r.log.DebugContext(ctx, "signing key rotation made by another replica")
		case next != nil:
			r.log.InfoContext(ctx, "signing key created", "kid", next.ID, "generation", next.Generation,
				"activates_at", next.ActivatesAt, "retires_kid", plan.Retire)
		}
		if applied && len(plan.Prune) > 0 {
			r.log.InfoContext(ctx, "expired signing keys deleted", "kids", plan.Prune)
		}
	}
	return r.Reload(ctx)
}

// Maintain rotates and reloads, logging a failure; run every refresh
// interval, it keeps this replica signing with the key the others sign
// with and publishing what they publish.
func (r *KeyRing) Maintain(ctx context.Context) {
	if err := r.Rotate(ctx); err != nil && ctx.Err() == nil {
		r.log.WarnContext(ctx, "signing key maintenance failed", "error", err.Error())
	}
}

// Signer returns the key to sign with now, or domain.ErrNoSigningKey when
// none is known yet.
func (r *KeyRing) Signer() (domain.SigningKey, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	k, ok := r.policy.Signing(r.keys, r.now())
	if !ok {
		return domain.SigningKey{}, domain.ErrNoSigningKey
	}
	return k, nil
}

// Published returns the keys verifiers must know now, newest first.
func (r *KeyRing) Published() []domain.SigningKey {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.policy.Published(r.keys, r.now())
}

// Key implements auth.KeySource with the published keys. An unknown kid
// triggers a reload (at most every few seconds), in case another replica
// just made a key this one has not read yet.
func (r *KeyRing) Key(ctx context.Context, kid string) (ed25519.PublicKey, error) {
	if k, ok := r.published(kid); ok {
		return k, nil
	}
	r.missMu.Lock()
	defer r.missMu.Unlock()
	r.mu.RLock()
	stale := r.now().Sub(r.lastReload) >= missReloadInterval
	r.mu.RUnlock()
	if stale {
		if err := r.Reload(ctx); err != nil {
			return nil, err
		}
	}
	if k, ok := r.published(kid); ok {
		return k, nil
	}
	return nil, fmt.Errorf("%w: %q", auth.ErrUnknownKey, kid)
}

func (r *KeyRing) published(kid string) (ed25519.PublicKey, bool) {
	for _, k := range r.Published() {
		if k.ID == kid {
			return k.PublicKey(), true
		}
	}
	return nil, false
}

// Ready reports whether a key to sign with is known (for readiness).
func (r *KeyRing) Ready(context.Context) error {
	_, err := r.Signer()
	return err
}

package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/mercato-dev/mercato/internal/orders/domain"
)

// DefaultIdempotencyKeyTTL is how long idempotency keys are kept, as
// payment APIs commonly do: far longer than any client retries.
const DefaultIdempotencyKeyTTL = 24 * time.Hour

// IdempotencyRecord ties a client's idempotency key to the order it created.
type IdempotencyRecord struct {
	UserID      string
	Key         string
	RequestHash string
	OrderID     string
}

// IdempotencyKeyRepository looks up and forgets clients' idempotency keys.
// A key is recorded with the order it created (OrderRepository.Create).
// Implementations are safe for concurrent use.
type IdempotencyKeyRepository interface {
	// FindIdempotencyKey returns the record of a user's key, if any.
	FindIdempotencyKey(ctx context.Context, userID, key string) (IdempotencyRecord, bool, error)
	// ForgetIdempotencyKeys deletes the idempotency keys recorded before
	// before and returns how many.
	ForgetIdempotencyKeys(ctx context.Context, before time.Time) (int64, error)
}

// requestHash is the fingerprint of a request's canonical form (lines
// merged and sorted, fields trimmed), so a retry is recognised even if the
// client re-serialised it, and a different request under the same key is
// not.
func requestHash(lines []domain.ItemInput, addr domain.Address, token string) string {
	type canonical struct {
		Cart    bool               `json:"cart"`
		Items   []domain.ItemInput `json:"items"`
		Address domain.Address     `json:"address"`
		Token   string             `json:"token"`
	}
	b, _ := json.Marshal(canonical{Cart: len(lines) == 0, Items: lines, Address: addr, Token: token}) // plain data: cannot fail
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// replay answers a request whose key was used before: with the order the
// key created if the request is the same, Unprocessable otherwise.
func (a *Orders) replay(ctx context.Context, rec IdempotencyRecord, hash string) (domain.View, error) {
	if rec.RequestHash != hash {
		return domain.View{}, domain.ErrIdempotencyKeyReused
	}
	v, err := a.orders.Get(ctx, rec.OrderID)
	if err != nil {
		return domain.View{}, fmt.Errorf("get order of idempotency key: %w", err)
	}
	return v, nil
}

// ForgetIdempotencyKeys deletes the idempotency keys older than the TTL
// and returns how many.
func (a *Orders) ForgetIdempotencyKeys(ctx context.Context) (int64, error) {
	return a.keys.ForgetIdempotencyKeys(ctx, a.cfg.Now().Add(-a.cfg.IdempotencyKeyTTL))
}

// KeyRetentionInterval is how often expired idempotency keys are
// forgotten: a tenth of the TTL, between a second and ten minutes.
func (a *Orders) KeyRetentionInterval() time.Duration {
	return min(max(a.cfg.IdempotencyKeyTTL/10, time.Second), 10*time.Minute)
}

// RetainKeys forgets expired idempotency keys, logging what it did; a
// failure is logged, for the next run to try again.
func (a *Orders) RetainKeys(ctx context.Context) {
	n, err := a.ForgetIdempotencyKeys(ctx)
	switch {
	case err != nil && ctx.Err() == nil:
		a.log.WarnContext(ctx, "forgetting expired idempotency keys failed", "error", err.Error())
	case n > 0:
		a.log.InfoContext(ctx, "forgot expired idempotency keys", "count", n)
	}
}

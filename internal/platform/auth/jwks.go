package auth

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"
)

// ErrUnknownKey means no published key has the token's kid.
var ErrUnknownKey = errors.New("unknown signing key")

// JWKSCache is a KeySource backed by a JWKS URL. Keys are cached and
// refreshed every RefreshInterval; a token with an unknown kid triggers an
// early refetch (so a freshly rotated key is picked up at once), but at most
// once per MinRefetchInterval, so a flood of forged kids cannot turn into a
// flood of fetches. Concurrent fetches are collapsed into one.
type JWKSCache struct {
	url    string
	client *http.Client
	// RefreshInterval is how old the cached set may get before any lookup
	// refetches it.
	RefreshInterval time.Duration
	// MinRefetchInterval throttles fetches caused by unknown kids.
	MinRefetchInterval time.Duration

	group    singleflight.Group
	mu       sync.RWMutex
	keys     map[string]ed25519.PublicKey
	at       time.Time // when keys were fetched
	tried    time.Time // when the last fetch was attempted
	fetching bool      // a fetch is in flight: lookups join it rather than fail as throttled
	lastErr  error     // why the last fetch failed; nil once one succeeds
	finished uint64    // fetches finished so far, failed or not
	now      func() time.Time
}

// NewJWKSCache returns a cache for url. A nil client uses one with a 5s timeout.
func NewJWKSCache(url string, client *http.Client) *JWKSCache {
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	return &JWKSCache{
		url: url, client: client,
		RefreshInterval:    5 * time.Minute,
		MinRefetchInterval: 10 * time.Second,
		now:                time.Now,
	}
}

// Key implements KeySource.
func (c *JWKSCache) Key(ctx context.Context, kid string) (ed25519.PublicKey, error) {
	c.mu.RLock()
	key, ok := c.keys[kid]
	fresh := c.keys != nil && c.now().Sub(c.at) < c.RefreshInterval
	throttled := c.now().Sub(c.tried) < c.MinRefetchInterval
	fetching, finished := c.fetching, c.finished
	c.mu.RUnlock()
	if ok && fresh {
		return key, nil
	}
	// A lookup that arrives while a fetch is in flight (a burst of requests
	// on a cold cache) waits for that fetch instead of failing as throttled.
	if !throttled || fetching {
		if err := c.refresh(ctx, finished); err != nil && !ok {
			return nil, fmt.Errorf("%w: %w", ErrKeysUnavailable, err)
		}
		c.mu.RLock()
		key, ok = c.keys[kid]
		c.mu.RUnlock()
	}
	if !ok {
		// Unknown to a set fetched just now is a forged or retired kid;
		// unknown because the set could not be fetched says nothing about
		// the token, and the caller should try again rather than log out.
		c.mu.RLock()
		failed := c.lastErr
		c.mu.RUnlock()
		if failed != nil {
			return nil, fmt.Errorf("%w: %q not in the cached set, and the last fetch failed: %w", ErrKeysUnavailable, kid, failed)
		}
		return nil, fmt.Errorf("%w: %q", ErrUnknownKey, kid)
	}
	return key, nil
}

// Refresh fetches the key set now (or takes the outcome of a fetch that
// started meanwhile).
func (c *JWKSCache) Refresh(ctx context.Context) error {
	c.mu.RLock()
	finished := c.finished
	c.mu.RUnlock()
	return c.refresh(ctx, finished)
}

// refresh fetches the set, unless a fetch has finished since the caller
// saw finished fetches: a lookup that decided to fetch, then lost the race
// to a fetch that ended first, takes that fetch's outcome rather than
// fetching again.
func (c *JWKSCache) refresh(ctx context.Context, finished uint64) error {
	result := c.group.DoChan("fetch", func() (any, error) {
		c.mu.Lock()
		if c.finished != finished {
			err := c.lastErr
			c.mu.Unlock()
			return nil, err
		}
		c.tried, c.fetching = c.now(), true
		c.mu.Unlock()
		keys, err := c.fetch(context.WithoutCancel(ctx))
		c.mu.Lock()
		defer c.mu.Unlock()
		c.fetching = false
		c.finished++
		if err != nil {
			c.lastErr = err
			return nil, err
		}
		c.keys, c.at, c.lastErr = keys, c.now(), nil
		return nil, nil
	})
	select {
	case r := <-result:
		return r.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *JWKSCache) fetch(ctx context.Context) (map[string]ed25519.PublicKey, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, fmt.Errorf("jwks request: %w", err)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch jwks: status %d", resp.StatusCode)
	}
	// Keys are decoded one by one: RFC 7517 says to skip keys of types a
	// reader does not understand, and a whole set rejected for one of them
	// would lock every token out.
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return nil, fmt.Errorf("decode jwks: %w", err)
	}
	keys := make(map[string]ed25519.PublicKey, len(set.Keys))
	for _, raw := range set.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			continue
		}
		pub, ok := k.Key.(ed25519.PublicKey)
		if !ok || k.KeyID == "" || (k.Algorithm != "" && k.Algorithm != Algorithm) || (k.Use != "" && k.Use != "sig") {
			continue // only Ed25519 signing keys for EdDSA are trusted
		}
		keys[k.KeyID] = pub
	}
	return keys, nil
}

// Ready reports whether keys could be fetched (for readiness checks).
func (c *JWKSCache) Ready(ctx context.Context) error {
	c.mu.RLock()
	have, finished := c.keys != nil, c.finished
	c.mu.RUnlock()
	if have {
		return nil
	}
	return c.refresh(ctx, finished)
}

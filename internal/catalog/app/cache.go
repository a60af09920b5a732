package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/mercato-dev/mercato/internal/catalog/domain"
)

// ProductCache is a cache shared by every replica in front of the
// repository's reads (GetProduct, BatchGetProducts). Writes never read it:
// they decide on versions and If-Match, which must come from the database.
//
// A cache that cannot be reached is only slower, never wrong: Lookup then
// answers nothing (every id a miss), Fill does nothing, and reporting the
// failure (metrics, log) is the cache's own business. Only Invalidate
// returns its error, for the event consumer to retry.
//
// Staleness is ruled out by versions rather than by timing. Invalidate
// records the first version that is current after a change; a Fill of an
// older version, or of "no such product", that arrives after the
// invalidation is dropped. So a reader that read the old row before a
// write committed cannot put it back after the writer invalidated it.
type ProductCache interface {
	// Lookup returns what the cache knows of each of ids, in order.
	Lookup(ctx context.Context, ids []string) []CacheEntry
	// Fill stores what a read of the repository found: the products, and
	// the ids it asked for that do not exist.
	Fill(ctx context.Context, found []domain.Product, missing []string)
	// Invalidate tells the cache that product id changed and that version
	// is the first one current after the change: the new version after a
	// create or update, the last version plus one after a delete (ids are
	// never reused, so that version never exists). Entries older than
	// version are dropped and no such entry is accepted afterwards.
	Invalidate(ctx context.Context, id string, version int64) error
}

// CacheState is what a cache knows of one id.
type CacheState int

// States of a CacheEntry.
const (
	// CacheMiss: the cache does not know the id (or could not be asked).
	CacheMiss CacheState = iota
	// CachedProduct: the entry holds the product.
	CachedProduct
	// CachedAbsent: the cache knows there is no product with the id.
	CachedAbsent
)

// CacheEntry is one answer of ProductCache.Lookup.
type CacheEntry struct {
	State CacheState
	// Product is set when State is CachedProduct.
	Product domain.Product
}

// Option configures a Catalog.
type Option func(*Catalog)

// WithCache reads products through cache: GetProduct and BatchGetProducts
// answer from it when they can and fill it when they read the repository;
// every write invalidates what it changed once it has committed.
func WithCache(cache ProductCache) Option {
	return func(c *Catalog) { c.cache = cache }
}

// getCached is GetProduct's read of a canonical id through the cache.
func (c *Catalog) getCached(ctx context.Context, id string) (domain.Product, error) {
	switch e := c.cache.Lookup(ctx, []string{id})[0]; e.State {
	case CachedProduct:
		return e.Product, nil
	case CachedAbsent:
		return domain.Product{}, fmt.Errorf("get product: %w", domain.ErrNotFound)
	}
	p, err := c.repo.Get(ctx, id)
	switch {
	case errors.Is(err, domain.ErrNotFound):
		c.cache.Fill(ctx, nil, []string{id})
	case err == nil:
		c.cache.Fill(ctx, []domain.Product{p}, nil)
	}
	if err != nil {
		return domain.Product{}, fmt.Errorf("get product: %w", err)
	}
	return p, nil
}

// batchGetCached returns the products among ids (canonical, distinct) that
// exist, in any order, asking the repository only for the cache's misses.
func (c *Catalog) batchGetCached(ctx context.Context, ids []string) ([]domain.Product, error) {
	entries := c.cache.Lookup(ctx, ids)
	found := make([]domain.Product, 0, len(ids))
	var misses []string
	for i, e := range entries {
		switch e.State {
		case CachedProduct:
			found = append(found, e.Product)
		case CacheMiss:
			misses = append(misses, ids[i])
		}
	}
	if len(misses) == 0 {
		return found, nil
	}
	read, err := c.repo.BatchGet(ctx, misses)
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, id := range misses {
		if !containsID(read, id) {
			missing = append(missing, id)
		}
	}
	c.cache.Fill(ctx, read, missing)
	return append(found, read...), nil
}

// invalidate drops what a committed write changed from the cache. Its
// error is not the writer's: the write stands, the cache has counted and
// logged the failure, and the write's event will invalidate again.
func (c *Catalog) invalidate(ctx context.Context, id string, version int64) {
	if c.cache == nil {
		return
	}
	// The write has committed: a client that hangs up now must not leave
	// the old product cached.
	_ = c.cache.Invalidate(context.WithoutCancel(ctx), id, version)
}

// ProductChanged invalidates the cached entry that a product.* event
// (subject, payload) makes stale. The writer invalidates the cache itself
// right after committing; the event covers the writes whose own
// invalidation did not happen: Redis failed for a moment, the process died
// between commit and invalidation, or the writer runs without the cache.
// An error means the cache could not be told, and the event should be
// delivered again. Without a cache it does nothing.
func (c *Catalog) ProductChanged(ctx context.Context, subject string, ev domain.ProductEvent) error {
	if c.cache == nil {
		return nil
	}
	version := ev.Version
	if subject == domain.SubjectProductDeleted {
		version++
	}
	if err := c.cache.Invalidate(ctx, ev.ID, version); err != nil {
		return fmt.Errorf("invalidate cached product %s: %w", ev.ID, err)
	}
	return nil
}

func containsID(products []domain.Product, id string) bool {
	for _, p := range products {
		if p.ID == id {
			return true
		}
	}
	return false
}

package adapters_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/catalog"
	"github.com/mercato-dev/mercato/internal/catalog/adapters"
	"github.com/mercato-dev/mercato/internal/catalog/app"
	"github.com/mercato-dev/mercato/internal/catalog/domain"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
	"github.com/mercato-dev/mercato/internal/platform/events"
)

// TestCatalogReadsThroughCache runs the use cases over the SQL repository
// of every engine with the Redis cache in front.
func TestCatalogReadsThroughCache(t *testing.T) {
	for _, engine := range dbtest.Engines(t) {
		t.Run(engine.Name, func(t *testing.T) {
			t.Run("read through, hit, invalidate", func(t *testing.T) { testReadThrough(t, newCachedFixture(t, engine.URL)) })
			t.Run("batch get", func(t *testing.T) { testCachedBatchGet(t, newCachedFixture(t, engine.URL)) })
			t.Run("stale fill after an update", func(t *testing.T) { testStaleFill(t, newCachedFixture(t, engine.URL), false) })
			t.Run("stale fill after a delete", func(t *testing.T) { testStaleFill(t, newCachedFixture(t, engine.URL), true) })
			t.Run("redis down", func(t *testing.T) { testCacheDown(t, newFixture(t, engine.URL)) })
		})
	}
}

type cachedFixture struct {
	*fixture
	cache  *testCache
	gated  *gatedRepo
	cached *app.Catalog
}

func newCachedFixture(t *testing.T, url string) *cachedFixture {
	t.Helper()
	f := newFixture(t, url)
	cache := newTestCache(t, adapters.CacheOptions{})
	gated := &gatedRepo{ProductRepository: f.repo}
	return &cachedFixture{
		fixture: f, cache: cache, gated: gated,
		cached: app.NewCatalog(gated, []byte("test-page-token-key-0123456789"), app.WithCache(cache)),
	}
}

// createProduct creates a product through the cached use cases.
func (f *cachedFixture) createProduct(t *testing.T) domain.Product {
	t.Helper()
	in := f.product(t, nil)
	p, err := f.cached.CreateProduct(f.admin, domain.ProductInput{
		SKU: in.SKU, Name: in.Name, Description: in.Description, PriceCents: in.PriceCents,
		Currency: in.Currency, Categories: in.Categories,
	})
	require.NoError(t, err)
	return p
}

// renameBehindCatalog changes a product's name in the database without
// the catalog knowing: a read that still returns the old name was answered
// by the cache.
func (f *cachedFixture) renameBehindCatalog(t *testing.T, id, name string) {
	t.Helper()
	_, err := f.db.ExecContext(t.Context(), `UPDATE products SET name = $1 WHERE id = $2`, name, id)
	require.NoError(t, err)
}

func (f *cachedFixture) hits(t *testing.T) float64 {
	return metric(t, f.cache.reg, "mercato_catalog_cache_hits_total")
}

func testReadThrough(t *testing.T, f *cachedFixture) {
	p := f.createProduct(t)

	got, err := f.cached.GetProduct(t.Context(), p.ID)
	require.NoError(t, err)
	require.Equal(t, p, got)
	require.Zero(t, f.hits(t), "the first read is a miss")

	f.renameBehindCatalog(t, p.ID, "Renamed behind the catalog")
	got, err = f.cached.GetProduct(t.Context(), p.ID)
	require.NoError(t, err)
	require.Equal(t, p, got, "the second read is answered by the cache")
	require.Equal(t, float64(1), f.hits(t))

	updated, err := f.cached.UpdateProduct(f.admin, app.UpdateProduct{
		ID: p.ID, Fields: []string{"price_cents"}, Values: domain.ProductInput{PriceCents: 777}, IfMatch: p.ETag(),
	})
	require.NoError(t, err, "writes read the database, not the cache: the If-Match of version 1 matches")
	require.Equal(t, "Renamed behind the catalog", updated.Name)
	got, err = f.cached.GetProduct(t.Context(), p.ID)
	require.NoError(t, err)
	require.Equal(t, updated, got, "an update is seen at once")

	require.NoError(t, f.cached.DeleteProduct(f.admin, p.ID, ""))
	_, err = f.cached.GetProduct(t.Context(), p.ID)
	require.ErrorIs(t, err, domain.ErrNotFound, "so is a delete")
	_, err = f.cached.GetProduct(t.Context(), p.ID)
	require.ErrorIs(t, err, domain.ErrNotFound)

	unknown := uuid.NewString()
	for range 2 {
		_, err = f.cached.GetProduct(t.Context(), unknown)
		require.ErrorIs(t, err, domain.ErrNotFound)
	}
	require.Equal(t, "n", f.cache.value(t, unknown), "an unknown id is cached as absent")
}

func testCachedBatchGet(t *testing.T, f *cachedFixture) {
	a, b, c := f.createProduct(t), f.createProduct(t), f.createProduct(t)
	unknown := uuid.NewString()
	_, err := f.cached.GetProduct(t.Context(), b.ID)
	require.NoError(t, err)

	asked := []string{c.ID, unknown, b.ID, a.ID, c.ID}
	got, err := f.cached.BatchGetProducts(t.Context(), asked)
	require.NoError(t, err)
	require.Equal(t, []domain.Product{c, b, a}, got, "in the order asked, each once, cached or not")
	require.Equal(t, float64(1), f.hits(t), "only b was cached")

	for _, p := range []domain.Product{a, b, c} {
		f.renameBehindCatalog(t, p.ID, "Renamed behind the catalog")
	}
	got, err = f.cached.BatchGetProducts(t.Context(), asked)
	require.NoError(t, err)
	require.Equal(t, []domain.Product{c, b, a}, got, "the misses were filled")
	require.Equal(t, float64(1+4), f.hits(t))

	require.NoError(t, f.cached.DeleteProduct(f.admin, b.ID, ""))
	got, err = f.cached.BatchGetProducts(t.Context(), asked)
	require.NoError(t, err)
	require.Equal(t, []string{c.ID, a.ID}, ids(got))
}

// testStaleFill: a reader reads version 1 from the database; before it
// fills the cache, a writer commits a change and invalidates. The reader's
// fill must not bring version 1 back.
func testStaleFill(t *testing.T, f *cachedFixture, deleting bool) {
	p := f.createProduct(t)
	held, release := f.gated.holdNextGet()
	read := make(chan domain.Product, 1)
	go func() {
		old, err := f.cached.GetProduct(context.WithoutCancel(t.Context()), p.ID)
		if err != nil {
			t.Errorf("slow read: %v", err)
		}
		read <- old
	}()
	<-held

	if deleting {
		require.NoError(t, f.cached.DeleteProduct(f.admin, p.ID, ""))
	} else {
		_, err := f.cached.UpdateProduct(f.admin, app.UpdateProduct{
			ID: p.ID, Fields: []string{"name"}, Values: domain.ProductInput{Name: "Second"},
		})
		require.NoError(t, err)
	}
	close(release)
	require.Equal(t, p, <-read, "the slow reader answers with what it read")

	got, err := f.cached.GetProduct(t.Context(), p.ID)
	if deleting {
		require.ErrorIs(t, err, domain.ErrNotFound)
		return
	}
	require.NoError(t, err)
	require.Equal(t, "Second", got.Name)
	require.Equal(t, int64(2), got.Version)
}

// testCacheDown: with Redis unreachable every use case works from the
// database.
func testCacheDown(t *testing.T, f *fixture) {
	cache, reg := cacheAt(t, closedAddr(t), adapters.CacheOptions{})
	c := app.NewCatalog(f.repo, []byte("test-page-token-key-0123456789"), app.WithCache(cache))
	in := f.product(t, nil)
	p, err := c.CreateProduct(f.admin, domain.ProductInput{SKU: in.SKU, Name: in.Name, PriceCents: 5, Currency: "EUR"})
	require.NoError(t, err, "a write succeeds although its invalidation fails")

	got, err := c.GetProduct(t.Context(), p.ID)
	require.NoError(t, err)
	require.Equal(t, p, got)
	batch, err := c.BatchGetProducts(t.Context(), []string{p.ID, uuid.NewString()})
	require.NoError(t, err)
	require.Equal(t, []domain.Product{p}, batch)
	updated, err := c.UpdateProduct(f.admin, app.UpdateProduct{ID: p.ID, Fields: []string{"name"}, Values: domain.ProductInput{Name: "Still"}})
	require.NoError(t, err)
	got, err = c.GetProduct(t.Context(), p.ID)
	require.NoError(t, err)
	require.Equal(t, updated, got)
	require.NoError(t, c.DeleteProduct(f.admin, p.ID, ""))
	_, err = c.GetProduct(t.Context(), p.ID)
	require.ErrorIs(t, err, domain.ErrNotFound)

	require.Positive(t, metric(t, reg, "mercato_catalog_cache_errors_total"))
	require.Zero(t, metric(t, reg, "mercato_catalog_cache_hits_total"))
}

// gatedRepo can hold one Get after it has read the database, until
// released: the slow reader of a race.
type gatedRepo struct {
	app.ProductRepository
	mu   sync.Mutex
	gate *gate
}

type gate struct{ held, release chan struct{} }

// holdNextGet makes the next Get stop after its read: held is closed when
// it has read, and it returns once release is closed.
func (r *gatedRepo) holdNextGet() (held <-chan struct{}, release chan<- struct{}) {
	g := &gate{held: make(chan struct{}), release: make(chan struct{})}
	r.mu.Lock()
	r.gate = g
	r.mu.Unlock()
	return g.held, g.release
}

func (r *gatedRepo) Get(ctx context.Context, id string) (domain.Product, error) {
	p, err := r.ProductRepository.Get(ctx, id)
	r.mu.Lock()
	g := r.gate
	r.gate = nil
	r.mu.Unlock()
	if g != nil {
		close(g.held)
		<-g.release
	}
	return p, err
}

// BenchmarkCacheGetProduct compares GetProduct's read path without the
// cache (a primary-key lookup of a prepared statement) and with a warm
// cache (one GET on the local Redis) over 100 products: one read at a
// time, and 32 readers at once.
func BenchmarkCacheGetProduct(b *testing.B) {
	for _, engine := range dbtest.Engines(b) {
		b.Run(engine.Name, func(b *testing.B) {
			d := dbtest.Open(b, engine.URL)
			require.NoError(b, catalog.MigrateDB(b.Context(), d))
			repo, err := adapters.NewProductSQLRepository(b.Context(), d, events.NewOutbox(d))
			require.NoError(b, err)
			b.Cleanup(func() { _ = repo.Close() })
			cache := newTestCache(b, adapters.CacheOptions{})
			key := []byte("bench-page-token-key-0123456789")
			admin := auth.WithPrincipal(b.Context(), auth.Principal{UserID: "admin-1", Role: auth.RoleAdmin})
			writer := app.NewCatalog(repo, key)
			products := make([]string, 100)
			for i := range products {
				p, err := writer.CreateProduct(admin, domain.ProductInput{
					SKU: fmt.Sprintf("bench-%03d", i), Name: "Bench", Description: "A product to read.",
					PriceCents: 100, Currency: "EUR", Categories: []string{"a", "b"},
				})
				require.NoError(b, err)
				products[i] = p.ID
			}
			for _, c := range []struct {
				name    string
				catalog *app.Catalog
			}{
				{"uncached", writer},
				{"cached", app.NewCatalog(repo, key, app.WithCache(cache))},
			} {
				ctx := context.Background()
				for _, id := range products {
					_, err := c.catalog.GetProduct(ctx, id)
					require.NoError(b, err)
				}
				b.Run(c.name, func(b *testing.B) {
					b.ReportAllocs()
					i := 0
					for b.Loop() {
						if _, err := c.catalog.GetProduct(ctx, products[i%len(products)]); err != nil {
							b.Fatal(err)
						}
						i++
					}
				})
				b.Run(c.name+"-32", func(b *testing.B) {
					b.ReportAllocs()
					b.SetParallelism(16) // 32 readers on two cores
					var next atomic.Int64
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							if _, err := c.catalog.GetProduct(ctx, products[next.Add(1)%int64(len(products))]); err != nil {
								b.Error(err)
								return
							}
						}
					})
				})
			}
		})
	}
}

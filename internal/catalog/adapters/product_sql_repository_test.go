package adapters_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/catalog"
	"github.com/mercato-dev/mercato/internal/catalog/adapters"
	"github.com/mercato-dev/mercato/internal/catalog/app"
	"github.com/mercato-dev/mercato/internal/catalog/domain"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
	"github.com/mercato-dev/mercato/internal/platform/events"
)

// TestProductSQLRepository runs one suite against every engine.
func TestProductSQLRepository(t *testing.T) {
	for _, engine := range dbtest.Engines(t) {
		t.Run(engine.Name, func(t *testing.T) {
			t.Run("create and get", func(t *testing.T) { testCreateGet(t, newFixture(t, engine.URL)) })
			t.Run("unique sku", func(t *testing.T) { testUniqueSKU(t, newFixture(t, engine.URL)) })
			t.Run("update checks the version", func(t *testing.T) { testUpdate(t, newFixture(t, engine.URL)) })
			t.Run("delete checks the version", func(t *testing.T) { testDelete(t, newFixture(t, engine.URL)) })
			t.Run("batch get", func(t *testing.T) { testBatchGet(t, newFixture(t, engine.URL)) })
			t.Run("pagination", func(t *testing.T) { testPagination(t, newFixture(t, engine.URL)) })
			t.Run("search", func(t *testing.T) { testSearch(t, newFixture(t, engine.URL)) })
			t.Run("category filter", func(t *testing.T) { testCategoryFilter(t, newFixture(t, engine.URL)) })
			t.Run("injection-looking queries", func(t *testing.T) { testInjection(t, newFixture(t, engine.URL)) })
			t.Run("concurrent updates lose nothing", func(t *testing.T) { testConcurrentUpdates(t, newFixture(t, engine.URL)) })
		})
	}
}

type fixture struct {
	db      *db.DB
	repo    *adapters.ProductSQLRepository
	catalog *app.Catalog
	admin   context.Context
	seq     int
}

// newFixture gives each subtest its own empty schema: every subtest of an
// engine shares the database, so tables are emptied first.
func newFixture(t *testing.T, url string) *fixture {
	t.Helper()
	d := dbtest.Open(t, url)
	require.NoError(t, catalog.MigrateDB(t.Context(), d))
	for _, table := range []string{"product_categories", "products", "outbox"} {
		_, err := d.ExecContext(t.Context(), "DELETE FROM "+table)
		require.NoError(t, err)
	}
	repo, err := adapters.NewProductSQLRepository(t.Context(), d, events.NewOutbox(d))
	require.NoError(t, err)
	t.Cleanup(func() { _ = repo.Close() })
	return &fixture{
		db: d, repo: repo,
		catalog: app.NewCatalog(repo, []byte("test-page-token-key-0123456789")),
		admin:   auth.WithPrincipal(t.Context(), auth.Principal{UserID: "admin-1", Role: auth.RoleAdmin}),
	}
}

// product builds a valid product; modify adjusts it.
func (f *fixture) product(t *testing.T, modify func(*domain.ProductInput)) domain.Product {
	t.Helper()
	f.seq++
	in := domain.ProductInput{
		SKU: fmt.Sprintf("sku-%04d", f.seq), Name: fmt.Sprintf("Product %d", f.seq),
		Description: "A fine product.", PriceCents: 1000 + int64(f.seq), Currency: "EUR",
		Categories: []string{"general"},
	}
	if modify != nil {
		modify(&in)
	}
	id, err := uuid.NewV7()
	require.NoError(t, err)
	p, err := domain.NewProduct(id.String(), in, time.Now().UTC().Truncate(time.Microsecond))
	require.NoError(t, err)
	return p
}

func (f *fixture) create(t *testing.T, modify func(*domain.ProductInput)) domain.Product {
	t.Helper()
	p := f.product(t, modify)
	require.NoError(t, f.repo.Create(t.Context(), p, event(t, domain.SubjectProductCreated, p)))
	return p
}

func event(t *testing.T, subject string, p domain.Product) events.Event {
	t.Helper()
	payload, err := domain.EventPayload(p)
	require.NoError(t, err)
	return events.Event{Subject: subject, Payload: payload}
}

func (f *fixture) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, f.db.QueryRowContext(t.Context(), query, args...).Scan(&n))
	return n
}

func (f *fixture) outboxCount(t *testing.T, subject string) int {
	return f.count(t, `SELECT COUNT(*) FROM outbox WHERE subject = $1`, subject)
}

func testCreateGet(t *testing.T, f *fixture) {
	p := f.create(t, func(in *domain.ProductInput) {
		in.Description = "Line one.\nLine two, with ünïcödé."
		in.Categories = []string{"kitchen", "coffee"}
		in.ImageURL = "https://img.example.com/p.png"
	})
	got, err := f.repo.Get(t.Context(), p.ID)
	require.NoError(t, err)
	require.Equal(t, p, got)
	require.True(t, p.CreatedAt.Equal(got.CreatedAt))
	require.Equal(t, 1, f.outboxCount(t, domain.SubjectProductCreated))

	noCats := f.create(t, func(in *domain.ProductInput) { in.Categories = nil })
	got, err = f.repo.Get(t.Context(), noCats.ID)
	require.NoError(t, err)
	require.Equal(t, []string{}, got.Categories)

	_, err = f.repo.Get(t.Context(), uuid.NewString())
	require.ErrorIs(t, err, domain.ErrNotFound)
}

func testUniqueSKU(t *testing.T, f *fixture) {
	first := f.create(t, func(in *domain.ProductInput) { in.SKU = "mug-01" })
	require.Equal(t, "MUG-01", first.SKU)

	dup := f.product(t, func(in *domain.ProductInput) { in.SKU = "Mug-01" })
	err := f.repo.Create(t.Context(), dup, event(t, domain.SubjectProductCreated, dup))
	require.ErrorIs(t, err, domain.ErrSKUTaken)

	_, err = f.repo.Get(t.Context(), dup.ID)
	require.ErrorIs(t, err, domain.ErrNotFound, "the losing product is not stored")
	require.Equal(t, 1, f.outboxCount(t, domain.SubjectProductCreated), "no event for the failed insert")
	require.Equal(t, 0, f.count(t, `SELECT COUNT(*) FROM product_categories WHERE product_id = $1`, dup.ID))
}

func testUpdate(t *testing.T, f *fixture) {
	p := f.create(t, func(in *domain.ProductInput) { in.Categories = []string{"old", "shared"} })
	price := int64(4242)
	cats := []string{"shared", "new"}
	v2, err := p.Apply(domain.ProductPatch{PriceCents: &price, Categories: &cats}, p.UpdatedAt.Add(time.Second))
	require.NoError(t, err)

	require.NoError(t, f.repo.Update(t.Context(), v2, p.Version, event(t, domain.SubjectProductUpdated, v2)))
	got, err := f.repo.Get(t.Context(), p.ID)
	require.NoError(t, err)
	require.Equal(t, v2, got)
	require.Equal(t, int64(2), got.Version)
	require.Equal(t, 1, f.outboxCount(t, domain.SubjectProductUpdated))

	// The category index follows the row.
	page, err := f.catalog.ListProducts(t.Context(), app.ListProducts{Category: "old"})
	require.NoError(t, err)
	require.Empty(t, page.Products)
	page, err = f.catalog.ListProducts(t.Context(), app.ListProducts{Category: "new"})
	require.NoError(t, err)
	require.Len(t, page.Products, 1)

	// A write based on version 1 loses and changes nothing.
	name := "Stale write"
	stale, err := p.Apply(domain.ProductPatch{Name: &name}, p.UpdatedAt.Add(2*time.Second))
	require.NoError(t, err)
	err = f.repo.Update(t.Context(), stale, p.Version, event(t, domain.SubjectProductUpdated, stale))
	require.ErrorIs(t, err, app.ErrVersionConflict)
	got, err = f.repo.Get(t.Context(), p.ID)
	require.NoError(t, err)
	require.Equal(t, v2, got)
	require.Equal(t, 1, f.outboxCount(t, domain.SubjectProductUpdated), "no event for the lost write")

	// Updating a product that does not exist is a conflict too.
	ghost := f.product(t, nil)
	err = f.repo.Update(t.Context(), ghost, 1, event(t, domain.SubjectProductUpdated, ghost))
	require.ErrorIs(t, err, app.ErrVersionConflict)
}

func testDelete(t *testing.T, f *fixture) {
	p := f.create(t, func(in *domain.ProductInput) { in.Categories = []string{"doomed"} })
	keep := f.create(t, func(in *domain.ProductInput) { in.Categories = []string{"doomed"} })

	err := f.repo.Delete(t.Context(), p.ID, p.Version+1, event(t, domain.SubjectProductDeleted, p))
	require.ErrorIs(t, err, app.ErrVersionConflict)
	_, err = f.repo.Get(t.Context(), p.ID)
	require.NoError(t, err, "a delete at the wrong version deletes nothing")
	require.Equal(t, 0, f.outboxCount(t, domain.SubjectProductDeleted))

	require.NoError(t, f.repo.Delete(t.Context(), p.ID, p.Version, event(t, domain.SubjectProductDeleted, p)))
	_, err = f.repo.Get(t.Context(), p.ID)
	require.ErrorIs(t, err, domain.ErrNotFound)
	require.Equal(t, 1, f.outboxCount(t, domain.SubjectProductDeleted))
	require.Equal(t, 0, f.count(t, `SELECT COUNT(*) FROM product_categories WHERE product_id = $1`, p.ID))

	page, err := f.catalog.ListProducts(t.Context(), app.ListProducts{Category: "doomed"})
	require.NoError(t, err)
	require.Equal(t, []string{keep.ID}, ids(page.Products))

	err = f.repo.Delete(t.Context(), p.ID, p.Version, event(t, domain.SubjectProductDeleted, p))
	require.ErrorIs(t, err, app.ErrVersionConflict, "deleting twice")

	// The same sku can be used again once the product is gone.
	again := f.product(t, func(in *domain.ProductInput) { in.SKU = p.SKU })
	require.NoError(t, f.repo.Create(t.Context(), again, event(t, domain.SubjectProductCreated, again)))
}

func testBatchGet(t *testing.T, f *fixture) {
	a := f.create(t, nil)
	b := f.create(t, nil)
	c := f.create(t, nil)
	got, err := f.catalog.BatchGetProducts(t.Context(), []string{c.ID, uuid.NewString(), a.ID, "not-an-id", c.ID})
	require.NoError(t, err)
	require.Equal(t, []string{c.ID, a.ID}, ids(got), "existing ones, in the order asked, once each")

	got, err = f.repo.BatchGet(t.Context(), []string{b.ID})
	require.NoError(t, err)
	require.Equal(t, []string{b.ID}, ids(got))
}

func testPagination(t *testing.T, f *fixture) {
	var created []string
	for range 45 {
		created = append(created, f.create(t, nil).ID)
	}
	var (
		seen  []string
		sizes []int
		token string
	)
	for {
		page, err := f.catalog.ListProducts(t.Context(), app.ListProducts{PageSize: 20, PageToken: token})
		require.NoError(t, err)
		sizes = append(sizes, len(page.Products))
		seen = append(seen, ids(page.Products)...)
		if len(sizes) == 1 {
			// Writes between pages disturb nothing already listed: a new
			// product sorts last, a deleted one just drops out.
			extra := f.create(t, nil)
			created = append(created, extra.ID)
		}
		token = page.NextPageToken
		if token == "" {
			break
		}
		require.Less(t, len(sizes), 10, "paging does not terminate")
	}
	require.Equal(t, []int{20, 20, 6}, sizes)
	require.Equal(t, created, seen, "every product once, in creation order")

	// An exact multiple of the page size ends without an empty extra page.
	page, err := f.catalog.ListProducts(t.Context(), app.ListProducts{PageSize: 46})
	require.NoError(t, err)
	require.Len(t, page.Products, 46)
	require.Empty(t, page.NextPageToken)

	page, err = f.catalog.ListProducts(t.Context(), app.ListProducts{})
	require.NoError(t, err)
	require.Len(t, page.Products, app.DefaultPageSize)
	require.NotEmpty(t, page.NextPageToken)
}

func testSearch(t *testing.T, f *fixture) {
	named := func(name, description string) string {
		return f.create(t, func(in *domain.ProductInput) { in.Name, in.Description = name, description }).ID
	}
	shirt := named("Plain Shirt", "Organic cotton.")
	percent := named("100% Wool Scarf", "Warm.")
	hundred := named("100 Percent Juice", "Fresh.")
	under := named("Snake_Case Mug", "For programmers.")
	snake := named("Snakecase poster", "Not underscored.")
	slash := named(`Back\slash tee`, "Odd name.")
	eclair := named("ÉCLAIR au chocolat", "Pâtisserie.")
	descOnly := named("Mystery box", "Contains a SHIRT, probably.")

	search := func(q string) []string {
		t.Helper()
		page, err := f.catalog.ListProducts(t.Context(), app.ListProducts{Query: q, PageSize: 100})
		require.NoError(t, err)
		return ids(page.Products)
	}
	require.Equal(t, []string{shirt, descOnly}, search("shirt"), "name and description, case-insensitive")
	require.Equal(t, []string{shirt, descOnly}, search("  SHIRT "))
	require.Equal(t, []string{percent}, search("100%"), "% is literal")
	require.Equal(t, []string{percent}, search("%"))
	require.Equal(t, []string{percent, hundred}, search("100"))
	require.Equal(t, []string{under}, search("e_c"), "_ is literal")
	require.Equal(t, []string{under}, search("_"))
	require.Equal(t, []string{under, snake}, search("snake"))
	require.Equal(t, []string{slash}, search(`k\s`), `\ is literal`)
	require.Equal(t, []string{eclair}, search("éclair"), "non-ASCII case folding")
	require.Empty(t, search("no such thing"))
	require.Len(t, search(""), 8)
}

func testCategoryFilter(t *testing.T, f *fixture) {
	var coffee []string
	for i := range 7 {
		p := f.create(t, func(in *domain.ProductInput) {
			in.Categories = []string{"coffee"}
			if i%2 == 0 {
				in.Categories = []string{"kitchen", "coffee"}
				in.Name = fmt.Sprintf("Grinder %d", i)
			}
		})
		coffee = append(coffee, p.ID)
		f.create(t, func(in *domain.ProductInput) { in.Categories = []string{"tea"}; in.Name = "Grinder for tea" })
	}

	var (
		seen  []string
		token string
	)
	for {
		page, err := f.catalog.ListProducts(t.Context(), app.ListProducts{Category: "coffee", PageSize: 3, PageToken: token})
		require.NoError(t, err)
		seen = append(seen, ids(page.Products)...)
		if token = page.NextPageToken; token == "" {
			break
		}
	}
	require.Equal(t, coffee, seen)

	page, err := f.catalog.ListProducts(t.Context(), app.ListProducts{Category: "coffee", Query: "grinder"})
	require.NoError(t, err)
	require.Equal(t, []string{coffee[0], coffee[2], coffee[4], coffee[6]}, ids(page.Products))

	page, err = f.catalog.ListProducts(t.Context(), app.ListProducts{Category: "cof"})
	require.NoError(t, err)
	require.Empty(t, page.Products, "categories match exactly")
}

func testInjection(t *testing.T, f *fixture) {
	for range 3 {
		f.create(t, nil)
	}
	for _, q := range []string{
		`'; DROP TABLE products; --`,
		`' OR '1'='1`,
		`" OR ""="`,
		`%' OR 1=1 --`,
		`'); DELETE FROM products WHERE ('a'='a`,
		`\'; DROP TABLE product_categories; --`,
	} {
		page, err := f.catalog.ListProducts(t.Context(), app.ListProducts{Query: q})
		require.NoError(t, err, q)
		require.Empty(t, page.Products, q)
		page, err = f.catalog.ListProducts(t.Context(), app.ListProducts{Query: q, Category: "general"})
		require.NoError(t, err, q)
		require.Empty(t, page.Products, q)
	}
	require.Equal(t, 3, f.count(t, `SELECT COUNT(*) FROM products`))
	require.Equal(t, 3, f.count(t, `SELECT COUNT(*) FROM product_categories`))
}

// testConcurrentUpdates has writers race on one product through the use
// case: each read-modify-write that loses is re-applied, so every update
// lands, each on its own version, with its own event.
func testConcurrentUpdates(t *testing.T, f *fixture) {
	p := f.create(t, nil)
	const writers = 10
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Go(func() {
			_, errs[i] = f.catalog.UpdateProduct(f.admin, app.UpdateProduct{
				ID: p.ID, Fields: []string{"price_cents"}, Values: domain.ProductInput{PriceCents: int64(500 + i)},
			})
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	got, err := f.repo.Get(t.Context(), p.ID)
	require.NoError(t, err)
	require.Equal(t, int64(writers+1), got.Version)
	require.Equal(t, writers, f.outboxCount(t, domain.SubjectProductUpdated))
	versions := f.count(t, `SELECT COUNT(DISTINCT payload) FROM outbox WHERE subject = $1`, domain.SubjectProductUpdated)
	require.Equal(t, writers, versions, "every event describes a distinct version")
}

// BenchmarkGet measures the read path GetProduct takes: one primary-key
// lookup of a prepared statement.
func BenchmarkGet(b *testing.B) {
	for _, engine := range dbtest.Engines(b) {
		b.Run(engine.Name, func(b *testing.B) {
			d := dbtest.Open(b, engine.URL)
			require.NoError(b, catalog.MigrateDB(b.Context(), d))
			repo, err := adapters.NewProductSQLRepository(b.Context(), d, events.NewOutbox(d))
			require.NoError(b, err)
			b.Cleanup(func() { _ = repo.Close() })
			id := uuid.Must(uuid.NewV7()).String()
			p, err := domain.NewProduct(id, domain.ProductInput{
				SKU: id, Name: "Bench", PriceCents: 1, Currency: "EUR", Categories: []string{"a", "b"},
			}, time.Now().UTC())
			require.NoError(b, err)
			payload, err := domain.EventPayload(p)
			require.NoError(b, err)
			require.NoError(b, repo.Create(b.Context(), p, events.Event{Subject: domain.SubjectProductCreated, Payload: payload}))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := repo.Get(context.Background(), id); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func ids(ps []domain.Product) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.ID
	}
	return out
}

package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/catalog/app"
	"github.com/mercato-dev/mercato/internal/catalog/domain"
	"github.com/mercato-dev/mercato/internal/platform/apperr"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/events"
)

// racingRepo holds one product and, while racing is set, bumps its version
// behind the caller's back before every Update or Delete, as a concurrent
// writer would.
type racingRepo struct {
	app.ProductRepository
	product  domain.Product
	racing   bool
	writes   int
	lastList struct {
		after string
		limit int
	}
}

func (r *racingRepo) Get(_ context.Context, id string) (domain.Product, error) {
	if id != r.product.ID {
		return domain.Product{}, domain.ErrNotFound
	}
	return r.product, nil
}

func (r *racingRepo) Update(_ context.Context, p domain.Product, expected int64, _ events.Event) error {
	if r.racing {
		r.product.Version++
	}
	if r.product.Version != expected {
		return app.ErrVersionConflict
	}
	r.writes++
	r.product = p
	return nil
}

func (r *racingRepo) Delete(_ context.Context, _ string, expected int64, _ events.Event) error {
	if r.racing {
		r.product.Version++
	}
	if r.product.Version != expected {
		return app.ErrVersionConflict
	}
	r.writes++
	return nil
}

func (r *racingRepo) List(_ context.Context, _ app.ListFilter, after string, limit int) ([]domain.Product, error) {
	r.lastList.after, r.lastList.limit = after, limit
	return nil, nil
}

func newRacing(t *testing.T) (*app.Catalog, *racingRepo, context.Context) {
	t.Helper()
	p, err := domain.NewProduct(uuid.NewString(), domain.ProductInput{
		SKU: "race", Name: "Race", PriceCents: 100, Currency: "EUR",
	}, time.Now().UTC())
	require.NoError(t, err)
	repo := &racingRepo{product: p}
	admin := auth.WithPrincipal(t.Context(), auth.Principal{UserID: "a", Role: auth.RoleAdmin})
	return app.NewCatalog(repo, []byte("app-test-key-0123456789")), repo, admin
}

func TestUpdateRetriesAfterLosingARace(t *testing.T) {
	c, repo, admin := newRacing(t)
	cmd := app.UpdateProduct{ID: repo.product.ID, Fields: []string{"name"}, Values: domain.ProductInput{Name: "New"}}

	repo.racing = true
	_, err := c.UpdateProduct(admin, cmd)
	require.ErrorIs(t, err, domain.ErrConcurrentMod, "a writer that always loses gives up")
	require.Equal(t, apperr.Conflict, apperr.KindOf(err))
	require.Zero(t, repo.writes)

	cmd.IfMatch = repo.product.ETag()
	_, err = c.UpdateProduct(admin, cmd)
	require.ErrorIs(t, err, domain.ErrETagMismatch, "with If-Match, losing the race is a precondition failure")

	repo.racing = false
	cmd.IfMatch = ""
	p, err := c.UpdateProduct(admin, cmd)
	require.NoError(t, err)
	require.Equal(t, "New", p.Name)
	require.Equal(t, 1, repo.writes)

	repo.racing = true
	err = c.DeleteProduct(admin, p.ID, `"v1"`)
	require.ErrorIs(t, err, domain.ErrETagMismatch)
	err = c.DeleteProduct(admin, p.ID, "")
	require.ErrorIs(t, err, domain.ErrConcurrentMod)
	require.Equal(t, 1, repo.writes)
}

func TestListPageSize(t *testing.T) {
	c, repo, _ := newRacing(t)
	for size, want := range map[int]int{0: app.DefaultPageSize + 1, 1: 2, 100: 101} {
		_, err := c.ListProducts(t.Context(), app.ListProducts{PageSize: size})
		require.NoError(t, err)
		require.Equal(t, want, repo.lastList.limit, "page size %d asks for one extra row", size)
		require.Empty(t, repo.lastList.after)
	}
	for _, size := range []int{-1, -100, 101, 1 << 20} {
		_, err := c.ListProducts(t.Context(), app.ListProducts{PageSize: size})
		require.ErrorIs(t, err, app.ErrPageSize)
	}
	_, err := c.ListProducts(t.Context(), app.ListProducts{Query: "two\nlines"})
	require.ErrorIs(t, err, app.ErrQueryCharacters)
}

func TestWritesRequireAdmin(t *testing.T) {
	c, repo, _ := newRacing(t)
	customer := auth.WithPrincipal(t.Context(), auth.Principal{UserID: "c", Role: auth.RoleCustomer})
	cmd := app.UpdateProduct{ID: repo.product.ID, Fields: []string{"name"}, Values: domain.ProductInput{Name: "x"}}

	for ctx, kind := range map[context.Context]apperr.Kind{t.Context(): apperr.Unauthenticated, customer: apperr.Forbidden} {
		_, err := c.CreateProduct(ctx, domain.ProductInput{SKU: "x", Name: "x", PriceCents: 1, Currency: "EUR"})
		require.Equal(t, kind, apperr.KindOf(err))
		_, err = c.UpdateProduct(ctx, cmd)
		require.Equal(t, kind, apperr.KindOf(err))
		require.Equal(t, kind, apperr.KindOf(c.DeleteProduct(ctx, repo.product.ID, "")))
	}
	require.Zero(t, repo.writes)
}

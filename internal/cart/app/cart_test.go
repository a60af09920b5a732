package app_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/cart"
	"github.com/mercato-dev/mercato/internal/cart/adapters"
	"github.com/mercato-dev/mercato/internal/cart/app"
	"github.com/mercato-dev/mercato/internal/cart/domain"
	"github.com/mercato-dev/mercato/internal/platform/apperr"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
)

// fakeCatalog knows a set of products and counts the questions asked.
type fakeCatalog struct {
	mu       sync.Mutex
	products map[string]bool
	down     bool
	asked    int
}

func (c *fakeCatalog) ProductExists(_ context.Context, id string) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.asked++
	if c.down {
		return false, fmt.Errorf("%w: connection refused", domain.ErrCatalogDown)
	}
	return c.products[id], nil
}

func (c *fakeCatalog) add(n int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.Must(uuid.NewV7()).String()
		c.products[ids[i]] = true
	}
	return ids
}

type fixture struct {
	cart    *app.Cart
	catalog *fakeCatalog
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	d := dbtest.Open(t, dbtest.SQLiteURL(t))
	require.NoError(t, cart.MigrateDB(t.Context(), d))
	catalog := &fakeCatalog{products: map[string]bool{}}
	return &fixture{cart: app.NewCart(adapters.NewCartSQLRepository(d), catalog), catalog: catalog}
}

func as(ctx context.Context, userID string) context.Context {
	return auth.WithPrincipal(ctx, auth.Principal{UserID: userID, Role: auth.RoleCustomer, Token: "token-of-" + userID})
}

func item(productID string, quantity int) domain.Item {
	return domain.Item{ProductID: productID, Quantity: quantity}
}

func TestSetItem(t *testing.T) {
	f := newFixture(t)
	ctx := as(t.Context(), "ada")
	p := f.catalog.add(2)

	got, err := f.cart.SetItem(ctx, p[0], 2)
	require.NoError(t, err)
	require.Equal(t, []domain.Item{item(p[0], 2)}, got, "SetItem answers with the whole cart")

	got, err = f.cart.SetItem(ctx, strings.ToUpper(p[1]), 1)
	require.NoError(t, err)
	require.Equal(t, []domain.Item{item(p[0], 2), item(p[1], 1)}, got, "ids are stored canonically")

	again, err := f.cart.SetItem(ctx, p[1], 1)
	require.NoError(t, err)
	require.Equal(t, got, again, "setting twice is setting once")

	got, err = f.cart.GetCart(ctx)
	require.NoError(t, err)
	require.Equal(t, again, got)
}

func TestSetItemRefusesBadInput(t *testing.T) {
	f := newFixture(t)
	ctx := as(t.Context(), "ada")
	p := f.catalog.add(1)[0]
	for _, q := range []int{-1, 100, 1 << 20} {
		_, err := f.cart.SetItem(ctx, p, q)
		require.ErrorIs(t, err, domain.ErrQuantityRange, "quantity %d", q)
		require.Equal(t, apperr.Invalid, apperr.KindOf(err))
	}
	_, err := f.cart.SetItem(ctx, "", 1)
	require.ErrorIs(t, err, domain.ErrProductIDRequired)
	_, err = f.cart.SetItem(ctx, "'; DROP TABLE cart_items; --", 1)
	require.ErrorIs(t, err, domain.ErrProductIDInvalid)
	require.Zero(t, f.catalog.asked, "nothing invalid reaches the catalog")

	cart, err := f.cart.GetCart(ctx)
	require.NoError(t, err)
	require.Empty(t, cart)
}

func TestSetItemNeedsAKnownProduct(t *testing.T) {
	f := newFixture(t)
	ctx := as(t.Context(), "ada")
	_, err := f.cart.SetItem(ctx, uuid.NewString(), 1)
	require.ErrorIs(t, err, domain.ErrProductNotFound)
	require.Equal(t, apperr.NotFound, apperr.KindOf(err))

	p := f.catalog.add(1)[0]
	f.catalog.down = true
	_, err = f.cart.SetItem(ctx, p, 1)
	require.Equal(t, apperr.Unavailable, apperr.KindOf(err))
	kind, msg := apperr.Public(err)
	require.Equal(t, apperr.Unavailable, kind)
	require.NotContains(t, msg, "connection refused", "the cause stays out of the client's message")

	cart, err := f.cart.GetCart(ctx)
	require.NoError(t, err)
	require.Empty(t, cart, "nothing is added when the catalog cannot confirm the product")
}

func TestZeroRemovesWithoutTheCatalog(t *testing.T) {
	f := newFixture(t)
	ctx := as(t.Context(), "ada")
	p := f.catalog.add(2)
	_, err := f.cart.SetItem(ctx, p[0], 3)
	require.NoError(t, err)
	_, err = f.cart.SetItem(ctx, p[1], 1)
	require.NoError(t, err)

	f.catalog.down = true
	asked := f.catalog.asked
	got, err := f.cart.SetItem(ctx, p[0], 0)
	require.NoError(t, err)
	require.Equal(t, []domain.Item{item(p[1], 1)}, got)
	got, err = f.cart.SetItem(ctx, p[0], 0)
	require.NoError(t, err, "removing twice is removing once")
	require.Equal(t, []domain.Item{item(p[1], 1)}, got)
	require.Equal(t, asked, f.catalog.asked)
}

func TestCartIsFullAtFiftyLines(t *testing.T) {
	f := newFixture(t)
	ctx := as(t.Context(), "ada")
	p := f.catalog.add(domain.MaxDistinctItems + 1)
	for _, id := range p[:domain.MaxDistinctItems] {
		_, err := f.cart.SetItem(ctx, id, 1)
		require.NoError(t, err)
	}
	_, err := f.cart.SetItem(ctx, p[domain.MaxDistinctItems], 1)
	require.ErrorIs(t, err, domain.ErrCartFull)
	kind, msg := apperr.Public(err)
	require.Equal(t, apperr.Invalid, kind)
	require.Equal(t, "cart is full (50 distinct items)", msg)
}

func TestClearCart(t *testing.T) {
	f := newFixture(t)
	ctx := as(t.Context(), "ada")
	p := f.catalog.add(1)[0]
	_, err := f.cart.SetItem(ctx, p, 1)
	require.NoError(t, err)
	require.NoError(t, f.cart.ClearCart(ctx))
	require.NoError(t, f.cart.ClearCart(ctx), "clearing twice is clearing once")
	cart, err := f.cart.GetCart(ctx)
	require.NoError(t, err)
	require.Empty(t, cart)
}

func TestEveryCallNeedsAUser(t *testing.T) {
	f := newFixture(t)
	p := f.catalog.add(1)[0]
	_, err := f.cart.GetCart(t.Context())
	require.ErrorIs(t, err, auth.ErrMissingToken)
	_, err = f.cart.SetItem(t.Context(), p, 1)
	require.ErrorIs(t, err, auth.ErrMissingToken)
	require.ErrorIs(t, f.cart.ClearCart(t.Context()), auth.ErrMissingToken)
}

func TestUsersSeeOnlyTheirOwnCart(t *testing.T) {
	f := newFixture(t)
	ada, bob := as(t.Context(), "ada"), as(t.Context(), "bob")
	p := f.catalog.add(2)
	_, err := f.cart.SetItem(ada, p[0], 2)
	require.NoError(t, err)
	bobs, err := f.cart.SetItem(bob, p[1], 5)
	require.NoError(t, err)
	require.Equal(t, []domain.Item{item(p[1], 5)}, bobs)

	require.NoError(t, f.cart.ClearCart(bob))
	adas, err := f.cart.GetCart(ada)
	require.NoError(t, err)
	require.Equal(t, []domain.Item{item(p[0], 2)}, adas)

	admin := auth.WithPrincipal(t.Context(), auth.Principal{UserID: "root", Role: auth.RoleAdmin})
	mine, err := f.cart.GetCart(admin)
	require.NoError(t, err)
	require.Empty(t, mine, "an admin has a cart of their own, not everyone's")
}

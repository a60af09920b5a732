package app_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/inventory"
	"github.com/mercato-dev/mercato/internal/inventory/adapters"
	"github.com/mercato-dev/mercato/internal/inventory/app"
	"github.com/mercato-dev/mercato/internal/inventory/domain"
	"github.com/mercato-dev/mercato/internal/platform/apperr"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
)

// engines are the databases every use case is checked against; each test
// gets a fresh database, so an expiry sweep in one cannot touch another's.
var engines = []struct {
	name string
	url  func(testing.TB) string
}{
	{"sqlite", dbtest.SQLiteURL},
	{"postgres", dbtest.PostgresURL},
}

// fakeClock is a settable time source, safe for concurrent use.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

const defaultTTL = 15 * time.Minute

type fixture struct {
	repo  *adapters.StockSQLRepository
	inv   *app.Inventory
	clock *fakeClock
	// Contexts carrying a principal of each role.
	admin, service, customer, anonymous context.Context
}

// forEachEngine runs fn once per engine on a fresh, migrated database.
func forEachEngine(t *testing.T, fn func(t *testing.T, f *fixture)) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			d := dbtest.Open(t, e.url(t))
			require.NoError(t, inventory.MigrateDB(t.Context(), d))
			clock := &fakeClock{now: time.Date(2030, 3, 1, 12, 0, 0, 0, time.UTC)}
			repo := adapters.NewStockSQLRepository(d)
			ctx := t.Context()
			fn(t, &fixture{
				repo:      repo,
				inv:       app.NewInventory(repo, defaultTTL, nil, app.WithClock(clock.Now)),
				clock:     clock,
				admin:     auth.WithPrincipal(ctx, auth.Principal{UserID: "admin-1", Role: auth.RoleAdmin}),
				service:   auth.WithPrincipal(ctx, auth.Principal{UserID: "orders", Role: auth.RoleService}),
				customer:  auth.WithPrincipal(ctx, auth.Principal{UserID: "user-1", Role: auth.RoleCustomer}),
				anonymous: ctx,
			})
		})
	}
}

func (f *fixture) setStock(t *testing.T, sku string, onHand int32) {
	t.Helper()
	_, err := f.inv.SetStock(f.admin, sku, onHand)
	require.NoError(t, err)
}

func (f *fixture) stock(t *testing.T, sku string) domain.Stock {
	t.Helper()
	st, err := f.repo.Stock(t.Context(), sku)
	require.NoError(t, err)
	return st
}

func (f *fixture) movements(t *testing.T, sku string) []domain.Movement {
	t.Helper()
	ms, err := f.repo.Movements(t.Context(), sku)
	require.NoError(t, err)
	return ms
}

// snapshot is everything a mutating call could change for some skus.
type snapshot struct {
	Stock     map[string]domain.Stock
	Movements map[string][]domain.Movement
}

func (f *fixture) snapshot(t *testing.T, skus ...string) snapshot {
	t.Helper()
	s := snapshot{Stock: map[string]domain.Stock{}, Movements: map[string][]domain.Movement{}}
	for _, sku := range skus {
		s.Stock[sku] = f.stock(t, sku)
		s.Movements[sku] = f.movements(t, sku)
	}
	return s
}

// requireLedgerMatches checks the ledger of sku sums to its stock row.
func (f *fixture) requireLedgerMatches(t *testing.T, sku string) {
	t.Helper()
	var sum domain.Delta
	for _, m := range f.movements(t, sku) {
		sum.OnHand += m.Delta.OnHand
		sum.Reserved += m.Delta.Reserved
		sum.Sold += m.Delta.Sold
	}
	st := f.stock(t, sku)
	require.Equal(t, domain.Delta{OnHand: st.OnHand, Reserved: st.Reserved, Sold: st.Sold}, sum,
		"ledger of %s does not add up to its stock", sku)
}

func requireKind(t *testing.T, err error, kind apperr.Kind, msg string) {
	t.Helper()
	require.Error(t, err)
	k, m := apperr.Public(err)
	require.Equal(t, kind, k, "error %q", err)
	if msg != "" {
		require.Equal(t, msg, m)
	}
}

func stockOf(sku string, onHand, reserved, sold int32) domain.Stock {
	return domain.Stock{SKU: sku, OnHand: onHand, Reserved: reserved, Sold: sold}
}

func lines(pairs ...any) []domain.Line {
	var out []domain.Line
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, domain.Line{SKU: pairs[i].(string), Quantity: int32(pairs[i+1].(int))})
	}
	return out
}

package adapters_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/cart"
	"github.com/mercato-dev/mercato/internal/cart/adapters"
	"github.com/mercato-dev/mercato/internal/cart/app"
	"github.com/mercato-dev/mercato/internal/cart/domain"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
)

// repoUnderTest is one app.CartRepository implementation with a way to
// apply an order the way the event consumer does (inside a transaction on
// SQL).
type repoUnderTest struct {
	name string
	repo app.CartRepository
	// applyOrder runs RemoveOrdered as the consumer would, committing.
	applyOrder func(t *testing.T, eventID, userID string, ordered []domain.Item)
}

// testRepositories returns the SQL repository on both engines and the
// Redis repository, each empty.
func testRepositories(t *testing.T) []repoUnderTest {
	t.Helper()
	var repos []repoUnderTest
	for _, engine := range dbtest.Engines(t) {
		d := dbtest.Open(t, engine.URL)
		require.NoError(t, cart.MigrateDB(t.Context(), d))
		repo := adapters.NewCartSQLRepository(d)
		repos = append(repos, repoUnderTest{
			name: engine.Name, repo: repo,
			applyOrder: func(t *testing.T, eventID, userID string, ordered []domain.Item) {
				t.Helper()
				require.NoError(t, d.InTx(t.Context(), func(tx *sql.Tx) error {
					return repo.RemoveOrdered(t.Context(), tx, eventID, userID, ordered)
				}))
			},
		})
	}
	repo := adapters.NewCartRedisRepository(redisClient(t), redisPrefix(t))
	repos = append(repos, repoUnderTest{
		name: "redis", repo: repo,
		applyOrder: func(t *testing.T, eventID, userID string, ordered []domain.Item) {
			t.Helper()
			require.NoError(t, repo.RemoveOrdered(t.Context(), nil, eventID, userID, ordered))
		},
	})
	return repos
}

// TestCartRepositories runs one suite against every repository. Subtests
// share a repository and keep apart by using fresh user ids.
func TestCartRepositories(t *testing.T) {
	for _, s := range testRepositories(t) {
		t.Run(s.name, func(t *testing.T) {
			t.Run("a new cart is empty", func(t *testing.T) { testEmptyCart(t, s) })
			t.Run("lines keep the order they were added in", func(t *testing.T) { testOrder(t, s) })
			t.Run("setting twice is setting once", func(t *testing.T) { testSetTwice(t, s) })
			t.Run("remove and clear", func(t *testing.T) { testRemoveClear(t, s) })
			t.Run("at most 50 lines", func(t *testing.T) { testLineLimit(t, s) })
			t.Run("concurrent adds never overfill a cart", func(t *testing.T) { testConcurrentAdds(t, s) })
			t.Run("carts are per user", func(t *testing.T) { testOwnership(t, s) })
			t.Run("an order takes its quantities out", func(t *testing.T) { testRemoveOrdered(t, s) })
		})
	}
}

func newUser() string { return uuid.NewString() }

func newProducts(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.Must(uuid.NewV7()).String()
	}
	return ids
}

func items(t *testing.T, s repoUnderTest, userID string) []domain.Item {
	t.Helper()
	got, err := s.repo.Items(t.Context(), userID)
	require.NoError(t, err)
	return got
}

func set(t *testing.T, s repoUnderTest, userID, productID string, quantity int) {
	t.Helper()
	require.NoError(t, s.repo.SetQuantity(t.Context(), userID, productID, quantity))
}

func testEmptyCart(t *testing.T, s repoUnderTest) {
	got := items(t, s, newUser())
	require.NotNil(t, got)
	require.Empty(t, got)
}

func testOrder(t *testing.T, s repoUnderTest) {
	user := newUser()
	// Added in an order unrelated to id order, so sorting by id would show.
	p := newProducts(3)
	set(t, s, user, p[2], 1)
	set(t, s, user, p[0], 2)
	set(t, s, user, p[1], 3)
	set(t, s, user, p[2], 7) // a new quantity keeps the line's place
	require.Equal(t, []domain.Item{item(p[2], 7), item(p[0], 2), item(p[1], 3)}, items(t, s, user))

	require.NoError(t, s.repo.Remove(t.Context(), user, p[2]))
	set(t, s, user, p[2], 1) // re-added: now the newest line
	require.Equal(t, []domain.Item{item(p[0], 2), item(p[1], 3), item(p[2], 1)}, items(t, s, user))
}

func testSetTwice(t *testing.T, s repoUnderTest) {
	user := newUser()
	p := newProducts(2)
	set(t, s, user, p[0], 2)
	set(t, s, user, p[1], 1)
	before := items(t, s, user)
	set(t, s, user, p[0], 2)
	require.Equal(t, before, items(t, s, user))
}

func testRemoveClear(t *testing.T, s repoUnderTest) {
	user := newUser()
	p := newProducts(3)
	for _, id := range p {
		set(t, s, user, id, 1)
	}
	require.NoError(t, s.repo.Remove(t.Context(), user, p[1]))
	require.NoError(t, s.repo.Remove(t.Context(), user, p[1]), "removing a missing line is not an error")
	require.Equal(t, []domain.Item{item(p[0], 1), item(p[2], 1)}, items(t, s, user))

	require.NoError(t, s.repo.Clear(t.Context(), user))
	require.Empty(t, items(t, s, user))
	require.NoError(t, s.repo.Clear(t.Context(), user), "clearing an empty cart is not an error")

	set(t, s, user, p[1], 4)
	require.Equal(t, []domain.Item{item(p[1], 4)}, items(t, s, user), "a cleared cart is usable again")
}

func testLineLimit(t *testing.T, s repoUnderTest) {
	user := newUser()
	p := newProducts(domain.MaxDistinctItems + 1)
	for _, id := range p[:domain.MaxDistinctItems] {
		set(t, s, user, id, 1)
	}
	err := s.repo.SetQuantity(t.Context(), user, p[domain.MaxDistinctItems], 1)
	require.ErrorIs(t, err, domain.ErrCartFull)
	got := items(t, s, user)
	require.Len(t, got, domain.MaxDistinctItems)
	require.NotContains(t, got, domain.Item{ProductID: p[domain.MaxDistinctItems], Quantity: 1})

	set(t, s, user, p[0], 99) // a full cart still takes new quantities
	require.NoError(t, s.repo.Remove(t.Context(), user, p[1]))
	set(t, s, user, p[domain.MaxDistinctItems], 1) // and a new line once there is room
	require.Len(t, items(t, s, user), domain.MaxDistinctItems)
}

func testConcurrentAdds(t *testing.T, s repoUnderTest) {
	user := newUser()
	const already, racers = domain.MaxDistinctItems - 5, 30
	for _, id := range newProducts(already) {
		set(t, s, user, id, 1)
	}
	var (
		wg       sync.WaitGroup
		added    atomic.Int32
		refused  atomic.Int32
		failures = make(chan error, racers)
	)
	for _, id := range newProducts(racers) {
		wg.Go(func() {
			err := s.repo.SetQuantity(context.WithoutCancel(t.Context()), user, id, 1)
			switch {
			case err == nil:
				added.Add(1)
			case errors.Is(err, domain.ErrCartFull):
				refused.Add(1)
			default:
				failures <- err
			}
		})
	}
	wg.Wait()
	close(failures)
	for err := range failures {
		require.NoError(t, err)
	}
	require.Equal(t, int32(5), added.Load())
	require.Equal(t, int32(racers-5), refused.Load())
	require.Len(t, items(t, s, user), domain.MaxDistinctItems)
}

func testOwnership(t *testing.T, s repoUnderTest) {
	alice, bob := newUser(), newUser()
	p := newProducts(2)
	set(t, s, alice, p[0], 3)
	set(t, s, bob, p[1], 1)
	set(t, s, bob, p[0], 9)
	require.Equal(t, []domain.Item{item(p[0], 3)}, items(t, s, alice))

	require.NoError(t, s.repo.Clear(t.Context(), bob))
	require.Equal(t, []domain.Item{item(p[0], 3)}, items(t, s, alice), "clearing one cart leaves the others")
	s.applyOrder(t, uuid.NewString(), bob, []domain.Item{item(p[0], 3)})
	require.Equal(t, []domain.Item{item(p[0], 3)}, items(t, s, alice), "an order changes only its buyer's cart")
}

func testRemoveOrdered(t *testing.T, s repoUnderTest) {
	user := newUser()
	p := newProducts(5)
	set(t, s, user, p[0], 2) // ordered 2: goes
	set(t, s, user, p[1], 5) // ordered 2: 3 stay
	set(t, s, user, p[2], 1) // not ordered: stays
	set(t, s, user, p[3], 4) // ordered with unknown quantity: goes
	s.applyOrder(t, uuid.NewString(), user, []domain.Item{
		item(p[0], 2), item(p[1], 2), item(p[3], 0), item(p[4], 1), // p[4] is not in the cart
	})
	require.Equal(t, []domain.Item{item(p[1], 3), item(p[2], 1)}, items(t, s, user))

	s.applyOrder(t, uuid.NewString(), user, []domain.Item{item(p[1], 10)})
	require.Equal(t, []domain.Item{item(p[2], 1)}, items(t, s, user), "ordering more than the cart holds removes the line")
}

// TestRedisAppliesAnEventOnce covers what only the Redis repository has to
// do itself: the SQL repository relies on the consumer's transaction.
func TestRedisAppliesAnEventOnce(t *testing.T) {
	repo := adapters.NewCartRedisRepository(redisClient(t), redisPrefix(t))
	user, event := newUser(), uuid.NewString()
	p := newProducts(1)
	require.NoError(t, repo.SetQuantity(t.Context(), user, p[0], 5))

	require.NoError(t, repo.RemoveOrdered(t.Context(), nil, event, user, []domain.Item{item(p[0], 2)}))
	require.NoError(t, repo.RemoveOrdered(t.Context(), nil, event, user, []domain.Item{item(p[0], 2)}))
	got, err := repo.Items(t.Context(), user)
	require.NoError(t, err)
	require.Equal(t, []domain.Item{item(p[0], 3)}, got)

	require.NoError(t, repo.RemoveOrdered(t.Context(), nil, uuid.NewString(), user, []domain.Item{item(p[0], 2)}))
	got, err = repo.Items(t.Context(), user)
	require.NoError(t, err)
	require.Equal(t, []domain.Item{item(p[0], 1)}, got, "another event applies")
}

// TestSQLRepositoryChangesOnlyInTheGivenTransaction checks that a
// rolled-back consumer transaction leaves the cart as it was.
func TestSQLRepositoryChangesOnlyInTheGivenTransaction(t *testing.T) {
	for _, engine := range dbtest.Engines(t) {
		t.Run(engine.Name, func(t *testing.T) {
			d := dbtest.Open(t, engine.URL)
			require.NoError(t, cart.MigrateDB(t.Context(), d))
			repo := adapters.NewCartSQLRepository(d)
			user := newUser()
			p := newProducts(1)
			require.NoError(t, repo.SetQuantity(t.Context(), user, p[0], 2))

			rollback := errors.New("consumer failed after the change")
			err := d.InTx(t.Context(), func(tx *sql.Tx) error {
				if err := repo.RemoveOrdered(t.Context(), tx, "e1", user, []domain.Item{item(p[0], 2)}); err != nil {
					return err
				}
				return rollback
			})
			require.ErrorIs(t, err, rollback)
			got, err := repo.Items(t.Context(), user)
			require.NoError(t, err)
			require.Equal(t, []domain.Item{item(p[0], 2)}, got)
		})
	}
}

func item(productID string, quantity int) domain.Item {
	return domain.Item{ProductID: productID, Quantity: quantity}
}

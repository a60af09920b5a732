package app_test

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/inventory/app"
	"github.com/mercato-dev/mercato/internal/inventory/domain"
)

// stockObserver reads a sku's stock in a loop until stopped and records
// any observation that breaks the invariants.
type stockObserver struct {
	stop     chan struct{}
	done     chan struct{}
	seen     atomic.Int64
	mu       sync.Mutex
	problems []string
}

func observeStock(t *testing.T, f *fixture, sku string, initial int32) *stockObserver {
	o := &stockObserver{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(o.done)
		for {
			select {
			case <-o.stop:
				return
			default:
			}
			st, err := f.repo.Stock(t.Context(), sku)
			if err != nil {
				o.report(fmt.Sprintf("read stock: %v", err))
				return
			}
			o.seen.Add(1)
			switch {
			case st.OnHand+st.Sold != initial:
				o.report(fmt.Sprintf("on_hand + sold = %d + %d, want %d", st.OnHand, st.Sold, initial))
			case st.Reserved < 0 || st.Reserved > st.OnHand || st.Sold < 0:
				o.report(fmt.Sprintf("invariant broken: %+v", st))
			}
		}
	}()
	return o
}

func (o *stockObserver) report(p string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.problems = append(o.problems, p)
}

// finish stops the observer and fails the test if it saw a broken invariant
// (or never got to look).
func (o *stockObserver) finish(t *testing.T) {
	t.Helper()
	close(o.stop)
	<-o.done
	o.mu.Lock()
	defer o.mu.Unlock()
	require.Empty(t, o.problems)
	require.Positive(t, o.seen.Load())
}

func TestNoOversellUnderConcurrency(t *testing.T) {
	forEachEngine(t, func(t *testing.T, f *fixture) {
		const stock, buyers = 10, 40
		f.setStock(t, "HOT", stock)
		obs := observeStock(t, f, "HOT", stock)

		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			won     []string
			errs    []error
			refused atomic.Int32
		)
		start := make(chan struct{})
		for i := range buyers {
			wg.Go(func() {
				id := fmt.Sprintf("order-%02d", i)
				<-start
				_, err := f.inv.ReserveStock(f.service, app.ReserveStock{OrderID: id, Lines: lines("HOT", 1)})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					won = append(won, id)
				case errAs[*domain.OutOfStockError](err):
					refused.Add(1)
				default:
					errs = append(errs, err)
				}
			})
		}
		close(start)
		wg.Wait()
		require.Empty(t, errs)
		require.Len(t, won, stock, "exactly the stock is reserved")
		require.EqualValues(t, buyers-stock, refused.Load())
		st := f.stock(t, "HOT")
		require.Equal(t, stockOf("HOT", stock, stock, 0), st)
		require.Zero(t, st.Available())

		// Commit every winner concurrently, each twice at once.
		commits := make(chan error, 2*len(won))
		for _, id := range won {
			for range 2 {
				wg.Go(func() {
					r, err := f.inv.CommitReservation(f.service, id)
					if err == nil && r.Status != domain.StatusCommitted {
						err = fmt.Errorf("commit of %s answered %s", id, r.Status)
					}
					commits <- err
				})
			}
		}
		wg.Wait()
		close(commits)
		for err := range commits {
			require.NoError(t, err)
		}
		obs.finish(t)

		require.Equal(t, stockOf("HOT", 0, 0, stock), f.stock(t, "HOT"))
		f.requireLedgerMatches(t, "HOT")
		var commitMoves int
		for _, m := range f.movements(t, "HOT") {
			if m.Kind == domain.MovementCommit {
				commitMoves++
			}
		}
		require.Equal(t, stock, commitMoves, "each order is committed once")
	})
}

func TestConcurrentReservesOfOneOrderHoldOnce(t *testing.T) {
	forEachEngine(t, func(t *testing.T, f *fixture) {
		f.setStock(t, "A", 100)
		f.setStock(t, "B", 100)
		var wg sync.WaitGroup
		results := make(chan error, 20)
		for range 20 {
			wg.Go(func() {
				r, err := f.inv.ReserveStock(f.service, app.ReserveStock{OrderID: "same", Lines: lines("A", 3, "B", 2)})
				if err == nil && (r.Status != domain.StatusReserved || !r.SameLines(lines("A", 3, "B", 2))) {
					err = fmt.Errorf("answered %+v", r)
				}
				results <- err
			})
		}
		wg.Wait()
		close(results)
		for err := range results {
			require.NoError(t, err)
		}
		require.Equal(t, stockOf("A", 100, 3, 0), f.stock(t, "A"))
		require.Equal(t, stockOf("B", 100, 2, 0), f.stock(t, "B"))
		f.requireLedgerMatches(t, "A")
	})
}

// A reserve retried by the saga may race the compensation that releases
// the same order: whichever wins, nothing stays held.
func TestConcurrentReserveAndReleaseOfOneOrderHoldNothing(t *testing.T) {
	forEachEngine(t, func(t *testing.T, f *fixture) {
		const orders = 30
		f.setStock(t, "A", 1000)
		var wg sync.WaitGroup
		errs := make(chan error, 2*orders)
		for i := range orders {
			id := fmt.Sprintf("race-%02d", i)
			wg.Go(func() {
				_, err := f.inv.ReserveStock(f.service, app.ReserveStock{OrderID: id, Lines: lines("A", 1)})
				errs <- err
			})
			wg.Go(func() {
				r, err := f.inv.ReleaseReservation(f.service, id)
				if err == nil && r.Status != domain.StatusReleased {
					err = fmt.Errorf("release of %s answered %s", id, r.Status)
				}
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		require.Equal(t, stockOf("A", 1000, 0, 0), f.stock(t, "A"))
		for i := range orders {
			r, err := f.inv.GetReservation(f.service, fmt.Sprintf("race-%02d", i))
			require.NoError(t, err)
			require.Equal(t, domain.StatusReleased, r.Status)
		}
		f.requireLedgerMatches(t, "A")
	})
}

func TestConcurrentSetStockAndReservations(t *testing.T) {
	forEachEngine(t, func(t *testing.T, f *fixture) {
		f.setStock(t, "A", 50)
		var wg sync.WaitGroup
		for i := range 30 {
			wg.Go(func() {
				_, err := f.inv.ReserveStock(f.service, app.ReserveStock{OrderID: fmt.Sprintf("o-%d", i), Lines: lines("A", 2)})
				if err != nil && !errAs[*domain.OutOfStockError](err) {
					t.Errorf("reserve: %v", err)
				}
			})
			wg.Go(func() {
				_, err := f.inv.SetStock(f.admin, "A", int32(40+i%20))
				if err != nil && !errAs[*domain.BelowReservedError](err) {
					t.Errorf("set stock: %v", err)
				}
			})
		}
		wg.Wait()
		st := f.stock(t, "A")
		require.LessOrEqual(t, st.Reserved, st.OnHand)
		require.Zero(t, st.Reserved%2)
		f.requireLedgerMatches(t, "A")
	})
}

// errAs reports whether err's chain has an error of type T.
func errAs[T error](err error) bool {
	var target T
	return errors.As(err, &target)
}

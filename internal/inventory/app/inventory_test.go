package app_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/inventory/app"
	"github.com/mercato-dev/mercato/internal/inventory/domain"
	"github.com/mercato-dev/mercato/internal/platform/apperr"
)

func TestSetAndGetStock(t *testing.T) {
	forEachEngine(t, func(t *testing.T, f *fixture) {
		st, err := f.inv.GetStock(f.admin, "never-stocked")
		require.NoError(t, err)
		require.Equal(t, stockOf("NEVER-STOCKED", 0, 0, 0), st, "a sku never stocked reads as zeros")

		st, err = f.inv.SetStock(f.admin, "abc-1", 7)
		require.NoError(t, err)
		require.Equal(t, stockOf("ABC-1", 7, 0, 0), st)
		require.EqualValues(t, 7, st.Available())

		got, err := f.inv.GetStock(f.admin, "ABC-1")
		require.NoError(t, err)
		require.Equal(t, st, got, "sku is case-insensitive, as in the catalog")

		before := f.snapshot(t, "ABC-1")
		st, err = f.inv.SetStock(f.admin, "ABC-1", 7)
		require.NoError(t, err)
		require.Equal(t, stockOf("ABC-1", 7, 0, 0), st)
		require.Equal(t, before, f.snapshot(t, "ABC-1"), "setting the same stock twice is once")

		st, err = f.inv.SetStock(f.admin, "ABC-1", 3)
		require.NoError(t, err)
		require.Equal(t, stockOf("ABC-1", 3, 0, 0), st)
		ms := f.movements(t, "ABC-1")
		require.Len(t, ms, 2)
		require.Equal(t, domain.MovementSet, ms[1].Kind)
		require.Equal(t, domain.Delta{OnHand: -4}, ms[1].Delta)
		require.Empty(t, ms[1].OrderID)
		require.Equal(t, f.clock.Now(), ms[1].At)
		f.requireLedgerMatches(t, "ABC-1")

		_, err = f.inv.SetStock(f.admin, "ABC-1", domain.MaxOnHand)
		require.NoError(t, err)
		_, err = f.inv.SetStock(f.admin, "ABC-1", domain.MaxOnHand+1)
		require.ErrorIs(t, err, domain.ErrOnHandRange)
		_, err = f.inv.SetStock(f.admin, "ABC-1", -1)
		require.ErrorIs(t, err, domain.ErrOnHandRange)
		_, err = f.inv.SetStock(f.admin, "bad sku", 1)
		require.ErrorIs(t, err, domain.ErrSKUCharacters)
		_, err = f.inv.GetStock(f.admin, "")
		require.ErrorIs(t, err, domain.ErrSKURequired)
	})
}

func TestSetStockBelowReservedIsConflict(t *testing.T) {
	forEachEngine(t, func(t *testing.T, f *fixture) {
		f.setStock(t, "A", 5)
		_, err := f.inv.ReserveStock(f.service, app.ReserveStock{OrderID: "o1", Lines: lines("A", 3)})
		require.NoError(t, err)
		before := f.snapshot(t, "A")

		_, err = f.inv.SetStock(f.admin, "A", 2)
		requireKind(t, err, apperr.Conflict, "on_hand cannot be below reserved stock (3 reserved)")
		require.ErrorIs(t, err, domain.ErrBelowReserved)
		require.Equal(t, before, f.snapshot(t, "A"), "a refused SetStock changes nothing")

		st, err := f.inv.SetStock(f.admin, "A", 3)
		require.NoError(t, err, "exactly what is reserved is allowed")
		require.Equal(t, stockOf("A", 3, 3, 0), st)
		require.Zero(t, st.Available())
	})
}

func TestReserveCommitRestockTwiceIsOnce(t *testing.T) {
	forEachEngine(t, func(t *testing.T, f *fixture) {
		f.setStock(t, "A", 10)
		f.setStock(t, "B", 4)

		req := app.ReserveStock{OrderID: "order-1", Lines: lines("b", 1, "A", 2, "B", 2), TTL: time.Minute}
		r, err := f.inv.ReserveStock(f.service, req)
		require.NoError(t, err)
		require.Equal(t, domain.Reservation{
			OrderID: "order-1", Status: domain.StatusReserved,
			Lines: lines("A", 2, "B", 3), ExpiresAt: f.clock.Now().Add(time.Minute),
		}, r)
		require.Equal(t, stockOf("A", 10, 2, 0), f.stock(t, "A"))
		require.Equal(t, stockOf("B", 4, 3, 0), f.stock(t, "B"))

		// Twice is once, for every step.
		steps := []struct {
			name  string
			run   func() (domain.Reservation, error)
			after map[string]domain.Stock
		}{
			{"reserve", func() (domain.Reservation, error) { return f.inv.ReserveStock(f.service, req) },
				map[string]domain.Stock{"A": stockOf("A", 10, 2, 0), "B": stockOf("B", 4, 3, 0)}},
			{"commit", func() (domain.Reservation, error) { return f.inv.CommitReservation(f.service, "order-1") },
				map[string]domain.Stock{"A": stockOf("A", 8, 0, 2), "B": stockOf("B", 1, 0, 3)}},
			{"restock", func() (domain.Reservation, error) { return f.inv.RestockOrder(f.service, "order-1") },
				map[string]domain.Stock{"A": stockOf("A", 10, 0, 0), "B": stockOf("B", 4, 0, 0)}},
		}
		for _, step := range steps {
			first, err := step.run()
			require.NoError(t, err, step.name)
			afterFirst := f.snapshot(t, "A", "B")
			require.Equal(t, step.after, afterFirst.Stock, step.name)

			second, err := step.run()
			require.NoError(t, err, "%s again", step.name)
			require.Equal(t, first, second, "%s again answers the same", step.name)
			require.Equal(t, afterFirst, f.snapshot(t, "A", "B"), "%s again changes nothing", step.name)
		}

		kinds := func(sku string) []string {
			var out []string
			for _, m := range f.movements(t, sku) {
				require.Equal(t, f.clock.Now(), m.At)
				if m.OrderID != "" {
					require.Equal(t, "order-1", m.OrderID)
				}
				out = append(out, m.Kind)
			}
			return out
		}
		require.Equal(t, []string{"set", "reserve", "commit", "restock"}, kinds("A"))
		require.Equal(t, []string{"set", "reserve", "commit", "restock"}, kinds("B"))
		f.requireLedgerMatches(t, "A")
		f.requireLedgerMatches(t, "B")

		r, err = f.inv.GetReservation(f.service, "order-1")
		require.NoError(t, err)
		require.Equal(t, domain.StatusRestocked, r.Status)

		before := f.snapshot(t, "A", "B")
		_, err = f.inv.CommitReservation(f.service, "order-1")
		requireKind(t, err, apperr.Conflict, "reservation is restocked")
		_, err = f.inv.ReleaseReservation(f.service, "order-1")
		requireKind(t, err, apperr.Conflict, "reservation is restocked")
		require.Equal(t, before, f.snapshot(t, "A", "B"))
	})
}

func TestReleaseTwiceIsOnce(t *testing.T) {
	forEachEngine(t, func(t *testing.T, f *fixture) {
		f.setStock(t, "A", 5)
		_, err := f.inv.ReserveStock(f.service, app.ReserveStock{OrderID: "o1", Lines: lines("A", 4)})
		require.NoError(t, err)
		_, err = f.inv.ReserveStock(f.service, app.ReserveStock{OrderID: "o2", Lines: lines("A", 2)})
		require.ErrorIs(t, err, domain.ErrOutOfStock, "only 1 left")

		r, err := f.inv.ReleaseReservation(f.service, "o1")
		require.NoError(t, err)
		require.Equal(t, domain.StatusReleased, r.Status)
		require.Equal(t, lines("A", 4), r.Lines)
		after := f.snapshot(t, "A")
		require.Equal(t, stockOf("A", 5, 0, 0), after.Stock["A"])

		again, err := f.inv.ReleaseReservation(f.service, "o1")
		require.NoError(t, err)
		require.Equal(t, r, again)
		require.Equal(t, after, f.snapshot(t, "A"), "releasing twice is once")
		f.requireLedgerMatches(t, "A")

		_, err = f.inv.CommitReservation(f.service, "o1")
		requireKind(t, err, apperr.Conflict, "reservation is released")
		require.ErrorIs(t, err, domain.ErrReservationReleased)
		_, err = f.inv.RestockOrder(f.service, "o1")
		requireKind(t, err, apperr.Conflict, "reservation is not committed")
		replay, err := f.inv.ReserveStock(f.service, app.ReserveStock{OrderID: "o1", Lines: lines("A", 4)})
		require.NoError(t, err)
		require.Equal(t, domain.StatusReleased, replay.Status, "a released order id never holds stock again")
		require.Equal(t, after, f.snapshot(t, "A"))

		// The released units are available to another order.
		_, err = f.inv.ReserveStock(f.service, app.ReserveStock{OrderID: "o2", Lines: lines("A", 5)})
		require.NoError(t, err)
	})
}

func TestReleaseOfCommittedIsConflict(t *testing.T) {
	forEachEngine(t, func(t *testing.T, f *fixture) {
		f.setStock(t, "A", 5)
		_, err := f.inv.ReserveStock(f.service, app.ReserveStock{OrderID: "o1", Lines: lines("A", 2)})
		require.NoError(t, err)
		_, err = f.inv.RestockOrder(f.service, "o1")
		requireKind(t, err, apperr.Conflict, "reservation is not committed")
		_, err = f.inv.CommitReservation(f.service, "o1")
		require.NoError(t, err)
		before := f.snapshot(t, "A")

		_, err = f.inv.ReleaseReservation(f.service, "o1")
		requireKind(t, err, apperr.Conflict, "reservation is committed; restock the order instead")
		require.Equal(t, before, f.snapshot(t, "A"))
		require.Equal(t, stockOf("A", 3, 0, 2), before.Stock["A"])
	})
}

func TestReserveIsAllOrNothing(t *testing.T) {
	forEachEngine(t, func(t *testing.T, f *fixture) {
		f.setStock(t, "A", 5)
		f.setStock(t, "B", 1)
		f.setStock(t, "C", 5)
		before := f.snapshot(t, "A", "B", "C", "UNKNOWN")

		_, err := f.inv.ReserveStock(f.service, app.ReserveStock{OrderID: "o1", Lines: lines("A", 2, "B", 2, "C", 1)})
		requireKind(t, err, apperr.Conflict, "insufficient stock for sku B")
		require.ErrorIs(t, err, domain.ErrOutOfStock)
		var oos *domain.OutOfStockError
		require.ErrorAs(t, err, &oos)
		require.Equal(t, "B", oos.SKU)
		require.Equal(t, before, f.snapshot(t, "A", "B", "C", "UNKNOWN"), "a refused reservation holds nothing")
		_, err = f.inv.GetReservation(f.service, "o1")
		require.ErrorIs(t, err, domain.ErrReservationNotFound, "and records nothing")

		_, err = f.inv.ReserveStock(f.service, app.ReserveStock{OrderID: "o1", Lines: lines("A", 1, "unknown", 1)})
		requireKind(t, err, apperr.Conflict, "insufficient stock for sku UNKNOWN")
		require.Equal(t, before, f.snapshot(t, "A", "B", "C", "UNKNOWN"))

		// The order id is free for a reservation that fits.
		r, err := f.inv.ReserveStock(f.service, app.ReserveStock{OrderID: "o1", Lines: lines("A", 2, "B", 1)})
		require.NoError(t, err)
		require.Equal(t, domain.StatusReserved, r.Status)
		require.Equal(t, stockOf("B", 1, 1, 0), f.stock(t, "B"))
		require.Equal(t, stockOf("C", 5, 0, 0), f.stock(t, "C"))
	})
}

func TestReserveSameOrderOtherLinesIsConflict(t *testing.T) {
	forEachEngine(t, func(t *testing.T, f *fixture) {
		f.setStock(t, "A", 10)
		f.setStock(t, "B", 10)
		first, err := f.inv.ReserveStock(f.service, app.ReserveStock{OrderID: "o1", Lines: lines("A", 2, "B", 1)})
		require.NoError(t, err)
		before := f.snapshot(t, "A", "B")

		for _, other := range [][]domain.Line{lines("A", 3, "B", 1), lines("A", 2), lines("A", 2, "B", 1, "C", 1)} {
			_, err := f.inv.ReserveStock(f.service, app.ReserveStock{OrderID: "o1", Lines: other})
			requireKind(t, err, apperr.Conflict, "order already has a reservation with different lines")
			require.ErrorIs(t, err, domain.ErrLinesDiffer)
		}
		// The same lines written differently are the same reservation; a
		// different ttl does not move the expiry of a replay.
		replay, err := f.inv.ReserveStock(f.service, app.ReserveStock{
			OrderID: "o1", Lines: lines("b", 1, "a", 1, "A", 1), TTL: time.Hour,
		})
		require.NoError(t, err)
		require.Equal(t, first, replay)
		require.Equal(t, before, f.snapshot(t, "A", "B"))
	})
}

func TestReleaseBeforeReserveLeavesTombstone(t *testing.T) {
	forEachEngine(t, func(t *testing.T, f *fixture) {
		f.setStock(t, "A", 5)
		before := f.snapshot(t, "A")

		r, err := f.inv.ReleaseReservation(f.service, "late")
		require.NoError(t, err)
		require.Equal(t, domain.Reservation{OrderID: "late", Status: domain.StatusReleased}, r)

		again, err := f.inv.ReleaseReservation(f.service, "late")
		require.NoError(t, err)
		require.Equal(t, r, again, "releasing twice is once")

		// The reservation the release overtook arrives: it holds nothing.
		late, err := f.inv.ReserveStock(f.service, app.ReserveStock{OrderID: "late", Lines: lines("A", 2)})
		require.NoError(t, err)
		require.Equal(t, r, late)
		require.Equal(t, before, f.snapshot(t, "A"))

		got, err := f.inv.GetReservation(f.service, "late")
		require.NoError(t, err)
		require.Equal(t, r, got)
		_, err = f.inv.CommitReservation(f.service, "late")
		requireKind(t, err, apperr.Conflict, "reservation is released")
		require.Equal(t, before, f.snapshot(t, "A"))
	})
}

func TestUnknownReservation(t *testing.T) {
	forEachEngine(t, func(t *testing.T, f *fixture) {
		for name, call := range map[string]func() (domain.Reservation, error){
			"get":     func() (domain.Reservation, error) { return f.inv.GetReservation(f.service, "nope") },
			"commit":  func() (domain.Reservation, error) { return f.inv.CommitReservation(f.service, "nope") },
			"restock": func() (domain.Reservation, error) { return f.inv.RestockOrder(f.service, "nope") },
		} {
			_, err := call()
			requireKind(t, err, apperr.NotFound, "reservation not found")
			require.ErrorIs(t, err, domain.ErrReservationNotFound, name)
		}
		_, err := f.inv.GetReservation(f.service, "nope")
		require.ErrorIs(t, err, domain.ErrReservationNotFound, "commit and restock of an unknown order record nothing")
	})
}

func TestExpirySweep(t *testing.T) {
	forEachEngine(t, func(t *testing.T, f *fixture) {
		f.setStock(t, "A", 100)
		reserve := func(id string, ttl time.Duration) {
			t.Helper()
			_, err := f.inv.ReserveStock(f.service, app.ReserveStock{OrderID: id, Lines: lines("A", 1), TTL: ttl})
			require.NoError(t, err)
		}
		reserve("short-1", time.Minute)
		reserve("short-2", time.Minute)
		reserve("committed", time.Minute)
		reserve("released", time.Minute)
		reserve("medium", 2*time.Minute)
		reserve("default", 0)
		_, err := f.inv.CommitReservation(f.service, "committed")
		require.NoError(t, err)
		_, err = f.inv.ReleaseReservation(f.service, "released")
		require.NoError(t, err)
		require.Equal(t, stockOf("A", 99, 4, 1), f.stock(t, "A"))

		n, err := f.inv.ExpireReservations(t.Context())
		require.NoError(t, err)
		require.Zero(t, n, "nothing is due yet")

		f.clock.Advance(time.Minute) // expiry is inclusive: due at exactly expires_at
		n, err = f.inv.ExpireReservations(t.Context())
		require.NoError(t, err)
		require.Equal(t, 2, n)
		status := func(id string) domain.Status {
			r, err := f.inv.GetReservation(f.service, id)
			require.NoError(t, err)
			return r.Status
		}
		require.Equal(t, domain.StatusExpired, status("short-1"))
		require.Equal(t, domain.StatusExpired, status("short-2"))
		require.Equal(t, domain.StatusCommitted, status("committed"))
		require.Equal(t, domain.StatusReleased, status("released"))
		require.Equal(t, domain.StatusReserved, status("medium"))
		require.Equal(t, domain.StatusReserved, status("default"))
		require.Equal(t, stockOf("A", 99, 2, 1), f.stock(t, "A"))

		before := f.snapshot(t, "A")
		n, err = f.inv.ExpireReservations(t.Context())
		require.NoError(t, err)
		require.Zero(t, n, "a second sweep finds nothing")
		_, err = f.inv.CommitReservation(f.service, "short-1")
		requireKind(t, err, apperr.Conflict, "reservation has expired")
		r, err := f.inv.ReleaseReservation(f.service, "short-1")
		require.NoError(t, err, "releasing an expired reservation is already done")
		require.Equal(t, domain.StatusExpired, r.Status)
		replay, err := f.inv.ReserveStock(f.service, app.ReserveStock{OrderID: "short-1", Lines: lines("A", 1)})
		require.NoError(t, err)
		require.Equal(t, domain.StatusExpired, replay.Status, "an expired order id never holds stock again")
		require.Equal(t, before, f.snapshot(t, "A"))

		// Past its expiry but not swept yet: a commit is refused and the
		// reservation expires on the spot.
		f.clock.Advance(time.Minute)
		_, err = f.inv.CommitReservation(f.service, "medium")
		requireKind(t, err, apperr.Conflict, "reservation has expired")
		require.Equal(t, domain.StatusExpired, status("medium"))
		require.Equal(t, stockOf("A", 99, 1, 1), f.stock(t, "A"))

		f.clock.Advance(defaultTTL)
		n, err = f.inv.ExpireReservations(t.Context())
		require.NoError(t, err)
		require.Equal(t, 1, n, "the default ttl applies when none is given")
		require.Equal(t, stockOf("A", 99, 0, 1), f.stock(t, "A"))
		f.requireLedgerMatches(t, "A")

		var expires int
		for _, m := range f.movements(t, "A") {
			if m.Kind == domain.MovementExpire {
				expires++
				require.Equal(t, domain.Delta{Reserved: -1}, m.Delta)
			}
		}
		require.Equal(t, 4, expires)
	})
}

func TestExpirySweepGoesThroughManyBatches(t *testing.T) {
	forEachEngine(t, func(t *testing.T, f *fixture) {
		const count = 230 // more than two sweep batches
		f.setStock(t, "A", count)
		for i := range count {
			_, err := f.inv.ReserveStock(f.service, app.ReserveStock{
				OrderID: fmt.Sprintf("o-%03d", i), Lines: lines("A", 1), TTL: time.Minute,
			})
			require.NoError(t, err)
		}
		require.Equal(t, stockOf("A", count, count, 0), f.stock(t, "A"))
		f.clock.Advance(time.Hour)
		n, err := f.inv.ExpireReservations(t.Context())
		require.NoError(t, err)
		require.Equal(t, count, n)
		require.Equal(t, stockOf("A", count, 0, 0), f.stock(t, "A"))
	})
}

func TestReserveValidation(t *testing.T) {
	forEachEngine(t, func(t *testing.T, f *fixture) {
		f.setStock(t, "A", 10)
		tests := []struct {
			name string
			req  app.ReserveStock
			want error
		}{
			{"no order id", app.ReserveStock{Lines: lines("A", 1)}, domain.ErrOrderIDRequired},
			{"bad order id", app.ReserveStock{OrderID: "a b", Lines: lines("A", 1)}, domain.ErrOrderIDCharacters},
			{"no lines", app.ReserveStock{OrderID: "o"}, domain.ErrNoLines},
			{"zero quantity", app.ReserveStock{OrderID: "o", Lines: lines("A", 0)}, domain.ErrQuantityRange},
			{"too much", app.ReserveStock{OrderID: "o", Lines: lines("A", 1001)}, domain.ErrQuantityRange},
			{"bad sku", app.ReserveStock{OrderID: "o", Lines: lines("A/B", 1)}, domain.ErrSKUCharacters},
			{"negative ttl", app.ReserveStock{OrderID: "o", Lines: lines("A", 1), TTL: -time.Second}, domain.ErrTTLRange},
			{"ttl over a day", app.ReserveStock{OrderID: "o", Lines: lines("A", 1), TTL: 25 * time.Hour}, domain.ErrTTLRange},
		}
		for _, tt := range tests {
			_, err := f.inv.ReserveStock(f.service, tt.req)
			require.ErrorIs(t, err, tt.want, tt.name)
			require.Equal(t, apperr.Invalid, apperr.KindOf(err), tt.name)
		}
		require.Equal(t, stockOf("A", 10, 0, 0), f.stock(t, "A"))
		for _, call := range []func(string) (domain.Reservation, error){
			func(id string) (domain.Reservation, error) { return f.inv.CommitReservation(f.service, id) },
			func(id string) (domain.Reservation, error) { return f.inv.ReleaseReservation(f.service, id) },
			func(id string) (domain.Reservation, error) { return f.inv.RestockOrder(f.service, id) },
			func(id string) (domain.Reservation, error) { return f.inv.GetReservation(f.service, id) },
		} {
			_, err := call("")
			require.ErrorIs(t, err, domain.ErrOrderIDRequired)
		}
	})
}

package app_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/inventory/app"
	"github.com/mercato-dev/mercato/internal/platform/apperr"
	"github.com/mercato-dev/mercato/internal/platform/auth"
)

func TestAuthorization(t *testing.T) {
	forEachEngine(t, func(t *testing.T, f *fixture) {
		f.setStock(t, "A", 10)
		_, err := f.inv.ReserveStock(f.service, app.ReserveStock{OrderID: "existing", Lines: lines("A", 1)})
		require.NoError(t, err)
		before := f.snapshot(t, "A")

		calls := map[string]func(ctx context.Context) error{
			"GetStock": func(ctx context.Context) error { _, err := f.inv.GetStock(ctx, "A"); return err },
			"SetStock": func(ctx context.Context) error { _, err := f.inv.SetStock(ctx, "A", 9); return err },
			"ReserveStock": func(ctx context.Context) error {
				_, err := f.inv.ReserveStock(ctx, app.ReserveStock{OrderID: "new", Lines: lines("A", 1)})
				return err
			},
			"CommitReservation":  func(ctx context.Context) error { _, err := f.inv.CommitReservation(ctx, "existing"); return err },
			"ReleaseReservation": func(ctx context.Context) error { _, err := f.inv.ReleaseReservation(ctx, "existing"); return err },
			"RestockOrder":       func(ctx context.Context) error { _, err := f.inv.RestockOrder(ctx, "existing"); return err },
			"GetReservation":     func(ctx context.Context) error { _, err := f.inv.GetReservation(ctx, "existing"); return err },
		}
		for name, call := range calls {
			err := call(f.anonymous)
			require.ErrorIs(t, err, auth.ErrMissingToken, "anonymous %s", name)
			require.Equal(t, apperr.Unauthenticated, apperr.KindOf(err))

			err = call(f.customer)
			require.Equal(t, apperr.Forbidden, apperr.KindOf(err), "customer %s: %v", name, err)
		}
		for _, name := range []string{"GetStock", "SetStock"} {
			require.ErrorIs(t, calls[name](f.service), auth.ErrForbidden, "service %s", name)
		}
		require.Equal(t, before, f.snapshot(t, "A"), "refused calls change nothing")
		_, err = f.inv.GetReservation(f.service, "new")
		require.Error(t, err, "a refused reservation is not recorded")

		// Admins may do everything, services every reservation call.
		require.NoError(t, calls["GetStock"](f.admin))
		require.NoError(t, calls["SetStock"](f.admin))
		require.NoError(t, calls["ReserveStock"](f.service))
		require.NoError(t, calls["GetReservation"](f.service))
		require.NoError(t, calls["CommitReservation"](f.admin))
		require.NoError(t, calls["RestockOrder"](f.service))
		_, err = f.inv.ReleaseReservation(f.admin, "new")
		require.NoError(t, err)
		require.Equal(t, stockOf("A", 9, 0, 0), f.stock(t, "A"))
	})
}

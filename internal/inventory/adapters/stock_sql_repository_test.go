package adapters_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/inventory"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
)

func openMigrated(t *testing.T, url string) *db.DB {
	d := dbtest.Open(t, url)
	require.NoError(t, inventory.MigrateDB(t.Context(), d))
	require.NoError(t, inventory.MigrateDB(t.Context(), d), "migrating twice is once")
	return d
}

// The schema refuses every row that breaks a stock invariant, whatever
// code (or person) writes it.
func TestSchemaEnforcesStockInvariants(t *testing.T) {
	for _, e := range dbtest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			d := openMigrated(t, e.URL)
			ctx := t.Context()
			now := time.Now().UTC().Format("2006-01-02T15:04:05.000000Z")
			_, err := d.ExecContext(ctx,
				`INSERT INTO stock (sku, on_hand, reserved, sold, updated_at) VALUES ('A', 5, 2, 1, $1)`, now)
			require.NoError(t, err)

			for name, update := range map[string]string{
				"negative on_hand":       `UPDATE stock SET on_hand = -1, reserved = 0 WHERE sku = 'A'`,
				"negative reserved":      `UPDATE stock SET reserved = -1 WHERE sku = 'A'`,
				"negative sold":          `UPDATE stock SET sold = -1 WHERE sku = 'A'`,
				"reserved above on_hand": `UPDATE stock SET reserved = 6 WHERE sku = 'A'`,
			} {
				_, err := d.ExecContext(ctx, update)
				require.Error(t, err, name)
			}
			var onHand, reserved, sold int
			require.NoError(t, d.QueryRowContext(ctx, `SELECT on_hand, reserved, sold FROM stock WHERE sku = 'A'`).
				Scan(&onHand, &reserved, &sold))
			require.Equal(t, []int{5, 2, 1}, []int{onHand, reserved, sold})

			_, err = d.ExecContext(ctx,
				`INSERT INTO reservations (order_id, status, expires_at, created_at, updated_at) VALUES ('o', 'lost', $1, $1, $1)`, now)
			require.Error(t, err, "unknown status")
			_, err = d.ExecContext(ctx,
				`INSERT INTO reservations (order_id, status, expires_at, created_at, updated_at) VALUES ('o', 'reserved', NULL, $1, $1)`, now)
			require.Error(t, err, "a live reservation needs an expiry")
			_, err = d.ExecContext(ctx,
				`INSERT INTO reservations (order_id, status, expires_at, created_at, updated_at) VALUES ('o', 'reserved', $1, $1, $1)`, now)
			require.NoError(t, err)
			_, err = d.ExecContext(ctx, `INSERT INTO reservation_lines (order_id, sku, quantity) VALUES ('o', 'A', 0)`)
			require.Error(t, err, "a line holds at least one unit")
			_, err = d.ExecContext(ctx, `INSERT INTO reservation_lines (order_id, sku, quantity) VALUES ('missing', 'A', 1)`)
			require.Error(t, err, "a line belongs to a reservation")
		})
	}
}

package adapters_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/orders"
	"github.com/mercato-dev/mercato/internal/orders/adapters"
	"github.com/mercato-dev/mercato/internal/orders/app"
	"github.com/mercato-dev/mercato/internal/orders/domain"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
	"github.com/mercato-dev/mercato/internal/platform/events"
)

// TestNeedsAttentionMigration upgrades a database that holds orders to the
// schema with the needs_attention status (on SQLite a rebuilt table): the
// orders and their bookkeeping are kept as they were, the new status is
// accepted and an unknown one still refused.
func TestNeedsAttentionMigration(t *testing.T) {
	for _, engine := range dbtest.Engines(t) {
		t.Run(engine.Name, func(t *testing.T) {
			ctx := t.Context()
			d := dbtest.Open(t, engine.URL)
			migrateTo(t, d, 2)
			require.NoError(t, events.EnsureSchema(ctx, d))
			f := &fixture{
				db: d, repo: adapters.NewOrderSQLRepository(d, events.NewOutbox(d)),
				now: time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC),
			}
			o, _ := f.place(t, "u1", "k1")
			_, ok, err := f.repo.Claim(ctx, o.ID, "r1", f.now, f.now.Add(time.Minute))
			require.NoError(t, err)
			require.True(t, ok)
			_, err = d.ExecContext(ctx, `UPDATE orders SET attempts = 2, payment_attempt = 1 WHERE id = $1`, o.ID)
			require.NoError(t, err)
			view, err := f.repo.Get(ctx, o.ID)
			require.NoError(t, err)
			order, state, err := f.repo.Load(ctx, o.ID)
			require.NoError(t, err)

			require.NoError(t, orders.MigrateDB(ctx, d))
			gotView, err := f.repo.Get(ctx, o.ID)
			require.NoError(t, err)
			require.Equal(t, view, gotView)
			gotOrder, gotState, err := f.repo.Load(ctx, o.ID)
			require.NoError(t, err)
			require.Equal(t, order, gotOrder)
			require.Equal(t, state, gotState)
			require.Equal(t, app.SagaState{Step: domain.StepReserveStock, Attempts: 2, NextAttemptAt: f.now,
				PaymentAttempt: app.PaymentAttemptArmed, LeaseOwner: "r1"}, gotState)
			stuck, err := f.repo.ListStuck(ctx, f.now.Add(time.Hour), "", 10)
			require.NoError(t, err)
			require.Len(t, stuck, 1)
			require.Empty(t, stuck[0].LastError)

			_, err = d.ExecContext(ctx, `UPDATE orders SET status = 'needs_attention' WHERE id = $1`, o.ID)
			require.NoError(t, err)
			_, err = d.ExecContext(ctx, `UPDATE orders SET status = 'lost' WHERE id = $1`, o.ID)
			require.Error(t, err, "the status is still checked")
			require.NoError(t, orders.MigrateDB(ctx, d), "applying again changes nothing")
		})
	}
}

// migrateTo applies the orders migrations up to version only.
func migrateTo(t *testing.T, d *db.DB, version int64) {
	t.Helper()
	sub, err := fs.Sub(os.DirFS(filepath.Join("..", "migrations")), string(d.Dialect))
	require.NoError(t, err)
	dialect := goose.DialectSQLite3
	if d.Dialect == db.Postgres {
		dialect = goose.DialectPostgres
	}
	provider, err := goose.NewProvider(dialect, d.DB, sub)
	require.NoError(t, err)
	_, err = provider.UpTo(t.Context(), version)
	require.NoError(t, err)
}

package db_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
)

var migrations = os.DirFS("testdata")

func TestOpenMigrateAndQueryOnBothEngines(t *testing.T) {
	for _, engine := range dbtest.Engines(t) {
		t.Run(engine.Name, func(t *testing.T) {
			// The PostgreSQL database does not exist yet: Open creates it.
			d := dbtest.Open(t, engine.URL)
			require.Equal(t, db.DialectOf(engine.URL), d.Dialect)

			require.NoError(t, db.Migrate(t.Context(), d, migrations))
			require.NoError(t, db.Migrate(t.Context(), d, migrations), "applying again changes nothing")

			// One query text serves both engines.
			_, err := d.ExecContext(t.Context(), "INSERT INTO widgets (id, name) VALUES ($1, $2)", "w1", "bolt")
			require.NoError(t, err)
			_, err = d.ExecContext(t.Context(), "INSERT INTO widgets (id, name) VALUES ($1, $2)", "w2", "bolt")
			require.True(t, db.IsUniqueViolation(err), "duplicate name: %v", err)
			require.False(t, db.IsUniqueViolation(errors.New("other")))

			// InTx commits on nil and rolls back on error.
			boom := errors.New("boom")
			err = d.InTx(t.Context(), func(tx *sql.Tx) error {
				_, err := tx.ExecContext(t.Context(), "INSERT INTO widgets (id, name) VALUES ($1, $2)", "w3", "nut")
				require.NoError(t, err)
				return boom
			})
			require.ErrorIs(t, err, boom)
			require.NoError(t, d.InTx(t.Context(), func(tx *sql.Tx) error {
				_, err := tx.ExecContext(t.Context(), "INSERT INTO widgets (id, name) VALUES ($1, $2)", "w4", "washer")
				return err
			}))
			var names []string
			rows, err := d.QueryContext(t.Context(), "SELECT name FROM widgets ORDER BY id")
			require.NoError(t, err)
			defer rows.Close()
			for rows.Next() {
				var n string
				require.NoError(t, rows.Scan(&n))
				names = append(names, n)
			}
			require.NoError(t, rows.Err())
			require.Equal(t, []string{"bolt", "washer"}, names)
		})
	}
}

func TestConfigValidate(t *testing.T) {
	require.Error(t, db.Config{}.Validate())
	require.Error(t, db.Config{URL: "postgres://user@host:notaport/db"}.Validate())
	require.Error(t, db.Config{URL: "x.db", MaxOpenConns: -1}.Validate())
	require.NoError(t, db.Config{URL: "data/catalog.db"}.Validate())
}

func TestPostgresURLFor(t *testing.T) {
	u, err := db.PostgresURLFor("postgres://app:secret@db:5432/postgres?sslmode=disable", "mercato_orders")
	require.NoError(t, err)
	require.Equal(t, "postgres://app:secret@db:5432/mercato_orders?sslmode=disable", u)
	require.Equal(t, db.Postgres, db.DialectOf(u))
	require.Equal(t, db.SQLite, db.DialectOf("./data/orders.db"))
}

func TestOpenReportsAnUnreachableServer(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	_, err := db.Open(ctx, db.Config{URL: "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"})
	require.ErrorContains(t, err, "connect to postgres")
}

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

// TestConcurrentMigrations opens and migrates one fresh database from
// several handles at once, as replicas of a service do when they start
// together: every one succeeds, and the schema is applied once.
func TestConcurrentMigrations(t *testing.T) {
	const replicas = 8
	// A round is a race that unserialised start-ups lose only now and
	// then; fresh PostgreSQL databases cost more than SQLite files.
	for engine, rounds := range map[string]int{"sqlite": 20, "postgres": 3} {
		t.Run(engine, func(t *testing.T) {
			for range rounds {
				url := dbtest.SQLiteURL(t)
				if engine == "postgres" {
					url = dbtest.PostgresURL(t)
				}
				start := make(chan struct{})
				errs := make(chan error, replicas)
				for range replicas {
					go func() {
						<-start
						d, err := db.Open(t.Context(), db.Config{URL: url})
						if err != nil {
							errs <- err
							return
						}
						defer d.Close()
						errs <- db.Migrate(t.Context(), d, migrations)
					}()
				}
				close(start)
				for range replicas {
					require.NoError(t, <-errs)
				}
				d := dbtest.Open(t, url)
				_, err := d.ExecContext(t.Context(), "INSERT INTO widgets (id, name) VALUES ($1, $2)", "w1", "bolt")
				require.NoError(t, err)
			}
		})
	}
}

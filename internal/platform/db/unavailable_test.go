package db_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
)

// The errors each engine really returns, unavailable or not.
func TestIsUnavailable(t *testing.T) {
	t.Run("postgres unreachable", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		require.NoError(t, ln.Close()) // nothing listens there now
		_, err = db.Open(t.Context(), db.Config{URL: "postgres://postgres@" + addr + "/none?sslmode=disable"})
		require.Error(t, err)
		assert.True(t, db.IsUnavailable(err), "%v", err)
	})
	t.Run("sqlite locked", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "locked.db")
		holder := dbtest.Open(t, path)
		lock, err := holder.BeginTx(t.Context(), nil) // immediate: the write lock
		require.NoError(t, err)
		defer func() { _ = lock.Rollback() }()
		impatient, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10)&_txlock=immediate")
		require.NoError(t, err)
		defer impatient.Close()
		_, err = impatient.BeginTx(t.Context(), nil)
		require.Error(t, err)
		assert.True(t, db.IsUnavailable(fmt.Errorf("begin: %w", err)), "%v", err)
	})
	t.Run("closed handle", func(t *testing.T) {
		for _, engine := range dbtest.Engines(t) {
			d, err := db.Open(t.Context(), db.Config{URL: engine.URL})
			require.NoError(t, err)
			require.NoError(t, d.Close())
			_, err = d.ExecContext(t.Context(), `SELECT 1`)
			require.Error(t, err)
			assert.True(t, db.IsUnavailable(err), "%s: %v", engine.Name, err)
		}
	})
	t.Run("postgres server shutting down a session", func(t *testing.T) {
		d := dbtest.Open(t, dbtest.PostgresURL(t))
		conn, err := d.Conn(t.Context())
		require.NoError(t, err)
		defer conn.Close()
		var pid int
		require.NoError(t, conn.QueryRowContext(t.Context(), `SELECT pg_backend_pid()`).Scan(&pid))
		_, err = d.ExecContext(t.Context(), `SELECT pg_terminate_backend($1)`, pid)
		require.NoError(t, err)
		_, err = conn.ExecContext(t.Context(), `SELECT 1`)
		require.Error(t, err)
		assert.True(t, db.IsUnavailable(err), "%v", err)
	})

	for _, engine := range dbtest.Engines(t) {
		t.Run(engine.Name+" statement errors", func(t *testing.T) {
			d := dbtest.Open(t, engine.URL)
			require.NoError(t, db.Migrate(t.Context(), d, migrations))
			_, err := d.ExecContext(t.Context(), `INSERT INTO widgets (id, name) VALUES ('w1', 'bolt')`)
			require.NoError(t, err)

			_, duplicate := d.ExecContext(t.Context(), `INSERT INTO widgets (id, name) VALUES ('w2', 'bolt')`)
			_, missing := d.ExecContext(t.Context(), `INSERT INTO widgets (id, name) VALUES ('w3', NULL)`)
			_, syntax := d.ExecContext(t.Context(), `INSERT INTO nowhere VALUES (1)`)
			noRow := d.QueryRowContext(t.Context(), `SELECT name FROM widgets WHERE id = 'none'`).Scan(new(string))
			for _, err := range []error{duplicate, missing, syntax, noRow, errors.New("boom"), context.Canceled} {
				require.Error(t, err)
				assert.False(t, db.IsUnavailable(err), "%v", err)
			}
			assert.True(t, db.IsConstraintViolation(duplicate), "%v", duplicate)
			assert.True(t, db.IsConstraintViolation(missing), "%v", missing)
			assert.False(t, db.IsConstraintViolation(syntax), "%v", syntax)
		})
	}
}

// OpenExisting reports a missing database and leaves nothing behind.
func TestOpenExistingCreatesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "orders.db")
	_, err := db.OpenExisting(t.Context(), db.Config{URL: path})
	require.ErrorIs(t, err, db.ErrNoDatabase)
	_, statErr := os.Stat(filepath.Dir(path))
	require.ErrorIs(t, statErr, os.ErrNotExist, "not even the directory")

	pgURL := dbtest.PostgresURL(t)
	_, err = db.OpenExisting(t.Context(), db.Config{URL: pgURL})
	require.ErrorIs(t, err, db.ErrNoDatabase)
	name, err := pgx.ParseConfig(pgURL)
	require.NoError(t, err)
	server := dbtest.Open(t, dbtest.PostgresServerURL())
	var exists bool
	require.NoError(t, server.QueryRowContext(t.Context(),
		`SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name.Database).Scan(&exists))
	require.False(t, exists)

	// Once there, both open.
	for _, engine := range dbtest.Engines(t) {
		dbtest.Open(t, engine.URL).Close()
		d, err := db.OpenExisting(t.Context(), db.Config{URL: engine.URL})
		require.NoError(t, err, engine.Name)
		require.NoError(t, d.Close())
	}
}

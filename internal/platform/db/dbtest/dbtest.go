// Package dbtest gives repository tests a fresh database on every engine, so
// one suite runs against SQLite and PostgreSQL alike.
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/mercato-dev/mercato/internal/platform/db"
)

// PostgresServerURL returns the PostgreSQL server tests use:
// MERCATO_TEST_POSTGRES_URL, or the local server on 127.0.0.1:5432.
func PostgresServerURL() string {
	if u := os.Getenv("MERCATO_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// Engine is one database engine under test.
type Engine struct {
	Name string
	// URL opens a fresh, empty database on this engine.
	URL string
}

// Engines returns a fresh SQLite file and a fresh PostgreSQL database, both
// removed when the test ends.
func Engines(t testing.TB) []Engine {
	t.Helper()
	return []Engine{
		{Name: "sqlite", URL: SQLiteURL(t)},
		{Name: "postgres", URL: PostgresURL(t)},
	}
}

// SQLiteURL returns the path of a fresh SQLite database file.
func SQLiteURL(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "test.db")
}

// PostgresURL creates a uniquely named database on the test server and drops
// it (closing its connections) when the test ends.
func PostgresURL(t testing.TB) string {
	t.Helper()
	buf := make([]byte, 6)
	_, _ = rand.Read(buf)
	name := "mercato_test_" + hex.EncodeToString(buf)
	u, err := db.PostgresURLFor(PostgresServerURL(), name)
	if err != nil {
		t.Fatalf("postgres URL: %v", err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, PostgresServerURL())
		if err != nil {
			t.Logf("drop test database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Logf("drop test database %s: %v", name, err)
		}
	})
	return u
}

// Open opens url and closes it when the test ends.
func Open(t testing.TB, url string) *db.DB {
	t.Helper()
	d, err := db.Open(t.Context(), db.Config{URL: url})
	if err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

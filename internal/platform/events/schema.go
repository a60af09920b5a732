package events

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/mercato-dev/mercato/internal/platform/db"
)

//go:embed migrations
var migrations embed.FS

// schemaVersionTable tracks this package's migrations apart from the
// service's own goose_db_version, so both number their migrations from 1.
const schemaVersionTable = "events_schema_version"

// schemaLockID serialises EnsureSchema across replicas starting at once
// against one PostgreSQL database. Any fixed value unlikely to be used by
// another advisory lock will do.
const schemaLockID int64 = 0x6d657263_6576656e // "mercaeven"

// EnsureSchema creates or upgrades the events tables in d: outbox and
// outbox_dead for a producer, processed_events and consumer_rejections for
// a consumer. It is idempotent and safe to call from several processes at once: the
// applied versions are recorded in their own table (events_schema_version),
// and on PostgreSQL an advisory lock makes concurrent callers take turns.
func EnsureSchema(ctx context.Context, d *db.DB) error {
	sub, err := fs.Sub(migrations, "migrations/"+string(d.Dialect))
	if err != nil {
		return fmt.Errorf("events migrations for %s: %w", d.Dialect, err)
	}
	dialect := goose.DialectSQLite3
	opts := []goose.ProviderOption{goose.WithTableName(schemaVersionTable)}
	if d.Dialect == db.Postgres {
		dialect = goose.DialectPostgres
		locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(schemaLockID))
		if err != nil {
			return fmt.Errorf("events schema lock: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	provider, err := goose.NewProvider(dialect, d.DB, sub, opts...)
	if err != nil {
		return fmt.Errorf("load events migrations: %w", err)
	}
	if _, err := provider.Up(ctx); err != nil {
		return fmt.Errorf("apply events migrations: %w", err)
	}
	return nil
}

// Migrate applies a service's own migrations from fsys (as db.Migrate does)
// and then the events schema (EnsureSchema): the whole schema of a database
// whose service publishes or consumes events. It is idempotent.
func Migrate(ctx context.Context, d *db.DB, fsys fs.FS) error {
	if err := db.Migrate(ctx, d, fsys); err != nil {
		return err
	}
	if err := EnsureSchema(ctx, d); err != nil {
		return fmt.Errorf("events schema: %w", err)
	}
	return nil
}

// The queries below are the only ones that differ per engine: everything
// else is shared SQL.

// nowSQL is an expression for the current time in the engine's column format.
func nowSQL(d db.Dialect) string {
	if d == db.Postgres {
		return "now()"
	}
	return "strftime('%Y-%m-%d %H:%M:%f', 'now')"
}

// olderThanSQL is a predicate: column holds a time more than the number of
// seconds in placeholder param ago.
func olderThanSQL(d db.Dialect, column, param string) string {
	if d == db.Postgres {
		return column + " < now() - make_interval(secs => " + param + ")"
	}
	return column + " < strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || " + param + " || ' seconds')"
}

// afterSecondsSQL is an expression for the time the number of seconds in
// placeholder param from now: a float8 on PostgreSQL, text ("1.500") on
// SQLite.
func afterSecondsSQL(d db.Dialect, param string) string {
	if d == db.Postgres {
		return "now() + make_interval(secs => " + param + ")"
	}
	return "strftime('%Y-%m-%d %H:%M:%f', 'now', '+' || " + param + " || ' seconds')"
}

// ageSecondsSQL is an expression for how many seconds ago the time in
// column (an aggregate allowed) was, as a float.
func ageSecondsSQL(d db.Dialect, column string) string {
	if d == db.Postgres {
		return "EXTRACT(EPOCH FROM now() - " + column + ")::float8"
	}
	return "(julianday('now') - julianday(" + column + ")) * 86400.0"
}

// placeholders returns "$from, $from+1, ..." for n parameters.
func placeholders(from, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("$")
		b.WriteString(strconv.Itoa(from + i))
	}
	return b.String()
}

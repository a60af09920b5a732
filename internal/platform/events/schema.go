package events

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/mercato-dev/mercato/internal/platform/db"
)

//go:embed migrations
var migrations embed.FS

// schemaVersionTable tracks this package's migrations apart from the
// service's own goose_db_version, so both number their migrations from 1.
const schemaVersionTable = "events_schema_version"

// EnsureSchema creates or upgrades the events tables in d: outbox and
// outbox_dead for a producer, processed_events and consumer_rejections for
// a consumer. It is idempotent and safe to call from several processes at once: the
// applied versions are recorded in their own table (events_schema_version),
// and concurrent callers take turns (db.MigrateTracked).
func EnsureSchema(ctx context.Context, d *db.DB) error {
	if err := db.MigrateTracked(ctx, d, migrations, schemaVersionTable); err != nil {
		return fmt.Errorf("events migrations: %w", err)
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

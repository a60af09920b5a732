package db

import (
	"context"
	"fmt"
	"io/fs"

	"github.com/pressly/goose/v3"
)

// Migrate applies the migrations in migrations/<dialect>/ (embedded SQL files
// named 00001_name.sql with goose annotations) that are not applied yet.
// Applying is idempotent: a second run changes nothing.
func Migrate(ctx context.Context, d *DB, migrations fs.FS) error {
	sub, err := fs.Sub(migrations, "migrations/"+string(d.Dialect))
	if err != nil {
		return fmt.Errorf("migrations for %s: %w", d.Dialect, err)
	}
	dialect := goose.DialectSQLite3
	if d.Dialect == Postgres {
		dialect = goose.DialectPostgres
	}
	provider, err := goose.NewProvider(dialect, d.DB, sub)
	if err != nil {
		return fmt.Errorf("load migrations: %w", err)
	}
	if _, err := provider.Up(ctx); err != nil {
		return fmt.Errorf("apply migrations: %w", err)
	}
	return nil
}

// OpenMigrated opens the database cfg names and applies migrate to it (a
// service's MigrateDB), so a service starts on its current schema. On
// failure nothing is left open.
func OpenMigrated(ctx context.Context, cfg Config, migrate func(context.Context, *DB) error) (*DB, error) {
	d, err := Open(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	if err := migrate(ctx, d); err != nil {
		_ = d.Close()
		return nil, err
	}
	return d, nil
}

// MigrateAndClose opens the database cfg names, applies migrate to it and
// closes it again: what `mercato migrate <service>` runs.
func MigrateAndClose(ctx context.Context, cfg Config, migrate func(context.Context, *DB) error) error {
	d, err := OpenMigrated(ctx, cfg, migrate)
	if err != nil {
		return err
	}
	return d.Close()
}

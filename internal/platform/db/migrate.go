package db

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"time"

	"github.com/pressly/goose/v3"
)

// Migrate applies the migrations in migrations/<dialect>/ (embedded SQL files
// named 00001_name.sql with goose annotations) that are not applied yet.
// Applying is idempotent: a second run changes nothing.
func Migrate(ctx context.Context, d *DB, migrations fs.FS) error {
	return MigrateTracked(ctx, d, migrations, "")
}

// MigrateTracked is Migrate recording the applied versions in versionTable
// (goose's own table when empty), so a package that brings its own tables
// to a service's database numbers its migrations apart from the service's.
//
// Replicas of a service start together and each migrates the database they
// share. goose reads what is applied before it applies the rest, so two
// runs at once could both find a migration missing and the second fail
// applying it ("table already exists"). A lock held for the whole run makes
// them take turns: the first applies what is missing, the others find
// nothing left to do.
func MigrateTracked(ctx context.Context, d *DB, migrations fs.FS, versionTable string) error {
	sub, err := fs.Sub(migrations, "migrations/"+string(d.Dialect))
	if err != nil {
		return fmt.Errorf("migrations for %s: %w", d.Dialect, err)
	}
	dialect := goose.DialectSQLite3
	var opts []goose.ProviderOption
	if versionTable != "" {
		opts = append(opts, goose.WithTableName(versionTable))
	}
	switch {
	case d.Dialect == Postgres:
		dialect = goose.DialectPostgres
		opts = append(opts, goose.WithSessionLocker(advisoryLock{}))
	case d.path != "":
		unlock, err := lockFile(ctx, d.path+sqliteLockSuffix)
		if err != nil {
			return fmt.Errorf("lock migrations: %w", err)
		}
		defer unlock()
	}
	provider, err := goose.NewProvider(dialect, d.DB, sub, opts...)
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

// migrationLockID names the PostgreSQL advisory lock migrations hold. An
// advisory lock belongs to one database, so every service's database can
// use the same id.
const migrationLockID = 7_220_418_125_347_112_001

// advisoryLock holds a session advisory lock on the connection goose
// migrates on. It tries again every lockPollInterval rather than waiting in
// pg_advisory_lock: a session waiting there is in a transaction, which a
// CREATE INDEX CONCURRENTLY of the holder waits for in turn (a deadlock).
type advisoryLock struct{}

func (advisoryLock) SessionLock(ctx context.Context, conn *sql.Conn) error {
	tick := time.NewTicker(lockPollInterval)
	defer tick.Stop()
	for {
		var locked bool
		if err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1)", int64(migrationLockID)).Scan(&locked); err != nil {
			return fmt.Errorf("take migration lock: %w", err)
		}
		if locked {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("take migration lock: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

func (advisoryLock) SessionUnlock(ctx context.Context, conn *sql.Conn) error {
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_unlock($1)", int64(migrationLockID)); err != nil {
		return fmt.Errorf("release migration lock: %w", err)
	}
	return nil
}

// lockPollInterval is how often a process waiting for another's lock on a
// database (to open a new SQLite file, or to migrate) tries again.
const lockPollInterval = 10 * time.Millisecond

// sqliteLockSuffix names the file beside a SQLite database that processes
// opening or migrating it lock, to take turns.
const sqliteLockSuffix = ".lock"

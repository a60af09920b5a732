// Package db opens a service's database (SQLite or PostgreSQL, both through
// database/sql), creates it when missing, and applies embedded migrations.
//
// Both engines accept the same $1-style placeholders, ON CONFLICT and
// RETURNING, so a service writes one set of SQL queries; only its migrations
// differ per engine (types, defaults).
package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Dialect names a database engine.
type Dialect string

// The supported engines.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// DB is a database handle that knows its engine. It is safe for concurrent use.
type DB struct {
	*sql.DB
	Dialect Dialect
	// path is a SQLite database's file.
	path string
}

// Config says where a service's data lives.
type Config struct {
	// URL is either a postgres:// URL or a path to a SQLite file
	// (optionally prefixed with sqlite://).
	URL string
	// MaxOpenConns bounds the pool; 0 picks a default per engine.
	MaxOpenConns int
}

// Validate reports what is wrong with the configuration.
func (c Config) Validate() error {
	if strings.TrimSpace(c.URL) == "" {
		return errors.New("database URL is empty")
	}
	if DialectOf(c.URL) == Postgres {
		if _, err := pgx.ParseConfig(c.URL); err != nil {
			return fmt.Errorf("database URL: %w", err)
		}
	}
	if c.MaxOpenConns < 0 {
		return errors.New("database max open connections must not be negative")
	}
	return nil
}

// DialectOf tells which engine a database URL points at.
func DialectOf(rawURL string) Dialect {
	if strings.HasPrefix(rawURL, "postgres://") || strings.HasPrefix(rawURL, "postgresql://") {
		return Postgres
	}
	return SQLite
}

// PostgresURLFor returns base with its database name replaced by name: how
// one server URL becomes one database per service.
func PostgresURLFor(base, name string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("parse postgres URL: %w", err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

// Open connects to the database, creating it (the SQLite file or the
// PostgreSQL database) when it does not exist yet.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if DialectOf(cfg.URL) == Postgres {
		return openPostgres(ctx, cfg)
	}
	return openSQLite(ctx, cfg)
}

func openSQLite(ctx context.Context, cfg Config) (*DB, error) {
	path := strings.TrimPrefix(cfg.URL, "sqlite://")
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("create data directory: %w", err)
		}
	}
	// WAL lets readers run beside the single writer; immediate transactions
	// take the write lock up front so two writers queue on busy_timeout
	// instead of failing to upgrade a read lock.
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)" +
		"&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	sqldb, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	maxConns := cfg.MaxOpenConns
	if maxConns == 0 {
		maxConns = 8
	}
	sqldb.SetMaxOpenConns(maxConns)
	sqldb.SetMaxIdleConns(maxConns)
	// The first connection to a new file switches it to WAL, which fails
	// with SQLITE_BUSY, busy_timeout or not, while another process's first
	// connection does the same: replicas starting together take turns.
	unlock, err := lockFile(ctx, path+sqliteLockSuffix)
	if err != nil {
		_ = sqldb.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	err = sqldb.PingContext(ctx)
	unlock()
	if err != nil {
		_ = sqldb.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	return &DB{DB: sqldb, Dialect: SQLite, path: path}, nil
}

func openPostgres(ctx context.Context, cfg Config) (*DB, error) {
	if err := createPostgresDatabase(ctx, cfg.URL); err != nil {
		return nil, err
	}
	return connectPostgres(ctx, cfg)
}

func connectPostgres(ctx context.Context, cfg Config) (*DB, error) {
	pgcfg, err := pgx.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("parse postgres URL: %w", err)
	}
	sqldb := stdlib.OpenDB(*pgcfg)
	maxConns := cfg.MaxOpenConns
	if maxConns == 0 {
		maxConns = 16
	}
	sqldb.SetMaxOpenConns(maxConns)
	sqldb.SetMaxIdleConns(maxConns)
	sqldb.SetConnMaxIdleTime(5 * time.Minute)
	if err := sqldb.PingContext(ctx); err != nil {
		_ = sqldb.Close()
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	return &DB{DB: sqldb, Dialect: Postgres}, nil
}

// createPostgresDatabase creates the URL's database when it is missing, by
// connecting to the server's maintenance database.
func createPostgresDatabase(ctx context.Context, rawURL string) error {
	cfg, err := pgx.ParseConfig(rawURL)
	if err != nil {
		return fmt.Errorf("parse postgres URL: %w", err)
	}
	name := cfg.Database
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err == nil {
		return conn.Close(ctx)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "3D000" { // invalid_catalog_name
		return fmt.Errorf("connect to postgres: %w", err)
	}
	cfg.Database = "postgres"
	conn, err = pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect to postgres maintenance database: %w", err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	// duplicate_database means a sibling process won the race: fine. So
	// does unique_violation, which a CREATE DATABASE running at the same
	// moment as the sibling's gets instead.
	if err != nil && (!errors.As(err, &pgErr) || (pgErr.Code != "42P04" && pgErr.Code != "23505")) {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// InTx runs fn in a transaction, committing when fn returns nil and rolling
// back otherwise.
func (d *DB) InTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := d.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// IsUniqueViolation reports whether err is a unique or primary key violation.
func IsUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "23505"
	}
	var sqliteErr *sqlite.Error
	if errors.As(err, &sqliteErr) {
		code := sqliteErr.Code()
		return code == sqlite3.SQLITE_CONSTRAINT_UNIQUE || code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

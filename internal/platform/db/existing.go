package db

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNoDatabase means OpenExisting found no database at the URL.
var ErrNoDatabase = errors.New("no such database")

// OpenExisting is Open for a database that must already exist: it creates
// neither the SQLite file nor the PostgreSQL database, so that a tool
// pointed at the wrong place reports it instead of leaving an empty
// database there.
func OpenExisting(ctx context.Context, cfg Config) (*DB, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if DialectOf(cfg.URL) == Postgres {
		d, err := connectPostgres(ctx, cfg)
		if err != nil && hasSQLState(err, "3D000") {
			return nil, fmt.Errorf("%w: %w", ErrNoDatabase, err)
		}
		return d, err
	}
	path := strings.TrimPrefix(cfg.URL, "sqlite://")
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: no SQLite file at %s", ErrNoDatabase, path)
	}
	return openSQLite(ctx, cfg)
}

func hasSQLState(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}

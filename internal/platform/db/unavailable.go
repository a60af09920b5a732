package db

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// errDBClosed is the error database/sql returns once a *sql.DB is closed.
// The package does not export it, so it is obtained from a closed handle,
// which makes errors.Is work on it.
var errDBClosed = func() error {
	d := sql.OpenDB(closedConnector{})
	_ = d.Close()
	_, err := d.Conn(context.Background())
	return err
}()

type closedConnector struct{}

func (closedConnector) Connect(context.Context) (driver.Conn, error) { return nil, driver.ErrBadConn }
func (closedConnector) Driver() driver.Driver                        { return closedDriver{} }

type closedDriver struct{}

func (closedDriver) Open(string) (driver.Conn, error) { return nil, driver.ErrBadConn }

// IsUnavailable reports whether err says the database could not serve a
// statement for reasons that are not the statement's own: the server cannot
// be reached, refused or dropped the connection, is shutting down or out of
// connections, memory or disk; the engine is busy or locked, or gave up on
// a deadlock, a serialization conflict or a lock timeout; the handle is
// closed. Retrying the same statement later can succeed. A constraint
// violation, a syntax error or a missing row is not unavailability.
//
// A context deadline or cancellation is reported here only as the drivers
// word it (PostgreSQL's timeout, SQLite's interrupt); callers that own the
// context know better whether it expired.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) || errors.Is(err, errDBClosed) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return unavailableSQLState(pgErr.Code)
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) || pgconn.Timeout(err) {
		return true
	}
	// pgconn marks its I/O failures (lost connection, a write that did not
	// go out, a busy connection) with SafeToRetry; a PgError has no such
	// method, so anything that has it is about the connection.
	var retryable interface{ SafeToRetry() bool }
	if errors.As(err, &retryable) {
		return true
	}
	var sqliteErr *sqlite.Error
	if errors.As(err, &sqliteErr) {
		return unavailableSQLiteCode(sqliteErr.Code())
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, os.ErrDeadlineExceeded)
}

// unavailableSQLState reports whether a PostgreSQL SQLSTATE means the
// server, not the statement, is the problem.
func unavailableSQLState(code string) bool {
	switch {
	case strings.HasPrefix(code, "08"), // connection exception
		strings.HasPrefix(code, "53"), // insufficient resources: disk, memory, connections
		strings.HasPrefix(code, "58"): // system error: I/O
		return true
	}
	switch code {
	case "40001", // serialization_failure
		"40P01", // deadlock_detected
		"55P03", // lock_not_available
		"57014", // query_canceled (statement timeout)
		"57P01", // admin_shutdown
		"57P02", // crash_shutdown
		"57P03", // cannot_connect_now (starting up, recovering)
		"57P04", // database_dropped
		"57P05", // idle_session_timeout
		"25P03", // idle_in_transaction_session_timeout
		"3D000": // invalid_catalog_name: the database is gone
		return true
	}
	return false
}

// unavailableSQLiteCode reports whether a SQLite result code (possibly an
// extended one) means the database file or the engine is the problem.
func unavailableSQLiteCode(code int) bool {
	switch code & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_READONLY,
		sqlite3.SQLITE_INTERRUPT, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_FULL,
		sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PROTOCOL, sqlite3.SQLITE_NOTADB:
		return true
	}
	return false
}

// IsConstraintViolation reports whether err is an integrity constraint
// violation: unique, primary key, foreign key, not null or check.
func IsConstraintViolation(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return strings.HasPrefix(pgErr.Code, "23")
	}
	var sqliteErr *sqlite.Error
	if errors.As(err, &sqliteErr) {
		return sqliteErr.Code()&0xff == sqlite3.SQLITE_CONSTRAINT
	}
	return false
}

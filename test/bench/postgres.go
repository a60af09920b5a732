package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
)

// uniqueName returns prefix followed by a random lower-case suffix: a
// database name no other run uses.
func uniqueName(prefix string) string {
	return prefix + strings.ToLower(rand.Text()[:10])
}

// withDatabase returns the server URL base pointing at database name.
func withDatabase(base, name string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("parse postgres URL: %w", err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

func openPostgres(ctx context.Context, rawURL string) (*sql.DB, error) {
	d, err := sql.Open("pgx", rawURL)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	if err := d.PingContext(ctx); err != nil {
		_ = d.Close()
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	return d, nil
}

// pgSettings are the server settings the figures depend on, read on the
// database the load runs against (a setting may differ per database).
type pgSettings struct {
	version, synchronousCommit, fsync, sharedBuffers, maxConnections string
}

func readPGSettings(ctx context.Context, rawURL string) (pgSettings, error) {
	d, err := openPostgres(ctx, rawURL)
	if err != nil {
		return pgSettings{}, err
	}
	defer d.Close()
	var s pgSettings
	for name, dst := range map[string]*string{
		"server_version": &s.version, "synchronous_commit": &s.synchronousCommit, "fsync": &s.fsync,
		"shared_buffers": &s.sharedBuffers, "max_connections": &s.maxConnections,
	} {
		if err := d.QueryRowContext(ctx, "SHOW "+name).Scan(dst); err != nil {
			return pgSettings{}, fmt.Errorf("show %s: %w", name, err)
		}
	}
	return s, nil
}

// commitsByDatabase is pg_stat_database.xact_commit of every database whose
// name starts with prefix. The counters lag each backend by up to about a
// second, which over a window of many seconds in a steady state is noise.
func commitsByDatabase(ctx context.Context, serverURL, prefix string) (map[string]int64, error) {
	d, err := openPostgres(ctx, serverURL)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	rows, err := d.QueryContext(ctx,
		"SELECT datname, xact_commit FROM pg_stat_database WHERE starts_with(datname, $1)", prefix)
	if err != nil {
		return nil, fmt.Errorf("read commit counters: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var name string
		var n int64
		if err := rows.Scan(&name, &n); err != nil {
			return nil, err
		}
		out[strings.TrimPrefix(name, prefix)] = n
	}
	return out, rows.Err()
}

// connectionsTo counts the server connections to databases starting with
// prefix.
func connectionsTo(ctx context.Context, serverURL, prefix string) (int, error) {
	d, err := openPostgres(ctx, serverURL)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	var n int
	err = d.QueryRowContext(ctx,
		"SELECT count(*) FROM pg_stat_activity WHERE starts_with(datname, $1)", prefix).Scan(&n)
	return n, err
}

// dropDatabases drops every database whose name starts with prefix,
// disconnecting whoever is still connected.
func dropDatabases(ctx context.Context, serverURL, prefix string) error {
	d, err := openPostgres(ctx, serverURL)
	if err != nil {
		return err
	}
	defer d.Close()
	names, err := databasesStartingWith(ctx, d, prefix)
	if err != nil {
		return err
	}
	for _, n := range names {
		if _, err := d.ExecContext(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{n}.Sanitize()+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("drop database %s: %w", n, err)
		}
	}
	return nil
}

func databasesStartingWith(ctx context.Context, d *sql.DB, prefix string) ([]string, error) {
	rows, err := d.QueryContext(ctx, "SELECT datname FROM pg_database WHERE starts_with(datname, $1)", prefix)
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		names = append(names, n)
	}
	return names, rows.Err()
}

type pgbenchConfig struct {
	serverURL               string
	scale, clients, threads int
	duration                time.Duration
	binary                  string
}

type pgbenchResult struct {
	settings     pgSettings
	tps          float64
	latency      string // average, as pgbench prints it
	transactions int64
	failed       int64
	initDuration time.Duration
	databaseName string
	commandLine  string
}

var (
	tpsLine     = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`)
	latencyLine = regexp.MustCompile(`(?m)^latency average = ([0-9.]+ ms)`)
	txLine      = regexp.MustCompile(`(?m)^number of transactions actually processed: ([0-9]+)`)
	failedLine  = regexp.MustCompile(`(?m)^number of failed transactions: ([0-9]+)`)
)

// runPgbench initialises a scratch database, runs pgbench's default
// TPC-B-like script against it and drops it.
func runPgbench(ctx context.Context, cfg pgbenchConfig) (res pgbenchResult, err error) {
	u, err := url.Parse(cfg.serverURL)
	if err != nil {
		return res, fmt.Errorf("parse postgres URL: %w", err)
	}
	name := uniqueName("bench_pgbench_")
	res.databaseName = name
	admin, err := openPostgres(ctx, cfg.serverURL)
	if err != nil {
		return res, err
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return res, fmt.Errorf("create database %s: %w", name, err)
	}
	defer func() {
		dropCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, dropErr := admin.ExecContext(dropCtx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); dropErr != nil && err == nil {
			err = fmt.Errorf("drop database %s: %w", name, dropErr)
		}
	}()
	dbURL, err := withDatabase(cfg.serverURL, name)
	if err != nil {
		return res, err
	}
	if res.settings, err = readPGSettings(ctx, dbURL); err != nil {
		return res, err
	}

	conn := []string{"-h", u.Hostname(), "-p", cmp.Or(u.Port(), "5432"), "-U", cmp.Or(u.User.Username(), "postgres")}
	env := os.Environ()
	if pw, ok := u.User.Password(); ok {
		env = append(env, "PGPASSWORD="+pw)
	}
	if mode := u.Query().Get("sslmode"); mode != "" {
		env = append(env, "PGSSLMODE="+mode)
	}
	pgbench := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, cfg.binary, append(append(args, conn...), name)...)
		cmd.Env = env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return out.String(), fmt.Errorf("%s %s: %w\n%s", cfg.binary, strings.Join(args, " "), err, out.String())
		}
		return out.String(), nil
	}

	start := time.Now()
	if _, err := pgbench("-i", "-q", "-s", strconv.Itoa(cfg.scale)); err != nil {
		return res, err
	}
	res.initDuration = time.Since(start)

	args := []string{"-c", strconv.Itoa(cfg.clients), "-j", strconv.Itoa(cfg.threads), "-T", strconv.Itoa(int(cfg.duration.Seconds()))}
	res.commandLine = "pgbench " + strings.Join(args, " ")
	out, err := pgbench(args...)
	if err != nil {
		return res, err
	}
	m := tpsLine.FindStringSubmatch(out)
	if m == nil {
		return res, fmt.Errorf("no tps in pgbench output:\n%s", out)
	}
	res.tps, _ = strconv.ParseFloat(m[1], 64)
	if m := latencyLine.FindStringSubmatch(out); m != nil {
		res.latency = m[1]
	}
	if m := txLine.FindStringSubmatch(out); m != nil {
		res.transactions, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := failedLine.FindStringSubmatch(out); m != nil {
		res.failed, _ = strconv.ParseInt(m[1], 10, 64)
	}
	return res, nil
}

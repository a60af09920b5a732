package launcher

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mercato-dev/mercato/internal/platform/config"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/system"
)

// Names of the services the launcher treats specially: identity gets the
// admin credentials and serves the keys every other service verifies tokens
// with; the gateway is the public edge, started once the others are ready
// and stopped first.
const (
	Identity = "identity"
	Gateway  = "gateway"
)

// DefaultServices is what `mercato up` runs, in order: every service of
// the table (internal/system).
var DefaultServices = system.Names()

// Defaults used when a Config field is left empty.
const (
	DefaultAddr         = "127.0.0.1:8080"
	DefaultDataDir      = "data"
	DefaultDBPrefix     = "mercato_"
	DefaultAdminEmail   = "admin@mercato.local"
	DefaultReadyTimeout = 30 * time.Second
	DefaultStopTimeout  = 20 * time.Second
)

// Formats of the log lines `mercato up` prints (Config.LogFormat).
const (
	// LogFormatAuto is text when Stdout is a terminal, JSON otherwise.
	LogFormatAuto = "auto"
	// LogFormatText turns every JSON line into a line a person reads.
	LogFormatText = "text"
	// LogFormatJSON writes every line as its process wrote it, after the
	// process's prefix: what files, pipes and log collectors get.
	LogFormatJSON = "json"
)

// The admin password lengths identity accepts, checked here so a password
// it would refuse is reported before anything starts.
const (
	minAdminPassword = 8
	maxAdminPassword = 128
)

// Config says what `mercato up` runs and where.
type Config struct {
	// Addr is the gateway's public listen address.
	Addr string
	// DataDir holds the SQLite files, the NATS store and the generated
	// admin password.
	DataDir string
	// PostgresURL, when set, puts every service's data in PostgreSQL
	// instead of SQLite: one database per service on that server, named
	// DBPrefix+service and created when missing.
	PostgresURL string
	// DBPrefix prefixes each service's PostgreSQL database name.
	DBPrefix string
	// AdminEmail and AdminPassword are the administrator identity creates
	// or updates at start. An empty password is read from
	// <DataDir>/admin-password, or generated and written there.
	AdminEmail    string
	AdminPassword string
	// Executable is the mercato binary each service runs from
	// (`<Executable> serve <service>`); the running binary by default.
	Executable string
	// Services are started together and stopped gateway first. They must
	// include identity and the gateway.
	Services []string
	// Replicas is how many instances of a service run, each its own
	// process (1 when a service is not named; at most MaxReplicas). The
	// gateway owns the public address and runs once.
	Replicas map[string]int
	// NATSURL, when set, is an external NATS server (with JetStream) the
	// services use instead of the embedded one.
	NATSURL string
	// Registry is how the services find each other: RegistryStatic
	// (default: the launcher gives each its neighbours' addresses) or
	// RegistryEtcd (every instance registers itself in etcd, an embedded
	// one unless EtcdURL names one).
	Registry string
	// EtcdURL is an external etcd's client URL (http://host:2379) for
	// RegistryEtcd.
	EtcdURL string
	// SkipSeed leaves an empty catalog empty instead of adding the demo
	// products.
	SkipSeed bool
	// Stdout receives the banner and every process's prefixed log lines.
	Stdout io.Writer
	// Color prefixes log lines with ANSI colours, and in the text format
	// colours levels and failed requests' statuses too.
	Color bool
	// LogFormat is LogFormatAuto (the default), LogFormatText or
	// LogFormatJSON.
	LogFormat string
	// LogLevel is the level of the launcher's own log (info by default);
	// the services read theirs from LOG_LEVEL in Env.
	LogLevel slog.Leveler
	// Env is the environment every child inherits, before the launcher's
	// own variables are added (os.Environ() for the real thing).
	Env []string
	// ReadyTimeout bounds start-up; StopTimeout bounds each process's
	// graceful stop before it is killed.
	ReadyTimeout time.Duration
	StopTimeout  time.Duration
}

// WithDefaults returns c with every empty field filled.
func (c Config) WithDefaults() Config {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if abs, err := filepath.Abs(c.DataDir); err == nil {
		c.DataDir = abs
	}
	if c.DBPrefix == "" {
		c.DBPrefix = DefaultDBPrefix
	}
	if c.AdminEmail == "" {
		c.AdminEmail = DefaultAdminEmail
	}
	if c.Executable == "" {
		if exe, err := os.Executable(); err == nil {
			c.Executable = exe
		}
	}
	if len(c.Services) == 0 {
		c.Services = slices.Clone(DefaultServices)
	}
	if c.Stdout == nil {
		c.Stdout = os.Stdout
	}
	if c.Registry == "" {
		c.Registry = RegistryStatic
	}
	if c.LogFormat == "" {
		c.LogFormat = LogFormatAuto
	}
	if c.LogLevel == nil {
		c.LogLevel = slog.LevelInfo
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = DefaultReadyTimeout
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = DefaultStopTimeout
	}
	return c
}

// MaxReplicas bounds the instances of one service `mercato up` runs.
const MaxReplicas = 16

// ParseReplicas reads the --replicas flag: a count for every service but
// the gateway ("2"), or a list of service=count ("catalog=3,orders=2").
// An empty string means one of each.
func ParseReplicas(s string) (map[string]int, error) {
	replicas := map[string]int{}
	s = strings.TrimSpace(s)
	if s == "" {
		return replicas, nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > MaxReplicas {
			return nil, fmt.Errorf("replicas %d is not between 1 and %d", n, MaxReplicas)
		}
		for _, name := range DefaultServices {
			if name != Gateway {
				replicas[name] = n
			}
		}
		return replicas, nil
	}
	for _, item := range strings.Split(s, ",") {
		name, count, ok := strings.Cut(strings.TrimSpace(item), "=")
		n, err := strconv.Atoi(strings.TrimSpace(count))
		name = strings.TrimSpace(name)
		switch {
		case !ok || name == "" || err != nil:
			return nil, fmt.Errorf("replicas %q: want a count (2) or service=count pairs (catalog=3,orders=2)", s)
		case replicas[name] != 0:
			return nil, fmt.Errorf("replicas: %s is named twice", name)
		}
		if _, known := system.Lookup(name); !known {
			return nil, fmt.Errorf("replicas: unknown service %q (known: %s)", name, strings.Join(system.Names(), ", "))
		}
		if n < 1 || n > MaxReplicas {
			return nil, fmt.Errorf("replicas: %s=%d is not between 1 and %d", name, n, MaxReplicas)
		}
		replicas[name] = n
	}
	return replicas, nil
}

// replicasOf is how many instances of service run.
func (c Config) replicasOf(service string) int {
	if n := c.Replicas[service]; n > 0 {
		return n
	}
	return 1
}

// serviceName is what a service may be called: it becomes a database name,
// a file name and part of an environment variable.
var serviceName = regexp.MustCompile(`^[a-z][a-z0-9]*$`)

// dbPrefix keeps database names plain identifiers.
var dbPrefix = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// Validate reports every problem with c (after WithDefaults) at once.
func (c Config) Validate() error {
	var p config.Problems
	if _, port, err := net.SplitHostPort(c.Addr); err != nil || port == "" {
		p.Add(true, "address %q is not host:port", c.Addr)
	}
	p.Add(c.DataDir == "", "data directory is empty")
	if c.PostgresURL != "" {
		p.Add(db.DialectOf(c.PostgresURL) != db.Postgres, "postgres URL %q must start with postgres://", c.PostgresURL)
		if db.DialectOf(c.PostgresURL) == db.Postgres {
			p.Include("postgres URL", db.Config{URL: c.PostgresURL}.Validate())
		}
	}
	p.Add(!dbPrefix.MatchString(c.DBPrefix), "database prefix %q must be lower-case letters, digits and underscores", c.DBPrefix)
	if _, err := mail.ParseAddress(c.AdminEmail); err != nil {
		p.Add(true, "admin email %q is not an email address", c.AdminEmail)
	}
	p.Add(c.AdminPassword != "" && (len(c.AdminPassword) < minAdminPassword || len(c.AdminPassword) > maxAdminPassword),
		"admin password must be %d to %d characters", minAdminPassword, maxAdminPassword)
	if c.Executable == "" {
		p.Add(true, "path of the mercato executable is unknown")
	} else if info, err := os.Stat(c.Executable); err != nil || info.IsDir() {
		p.Add(true, "mercato executable %q not found", c.Executable)
	}
	seen := map[string]bool{}
	for _, s := range c.Services {
		p.Add(!serviceName.MatchString(s), "service name %q must be lower-case letters and digits", s)
		if _, known := system.Lookup(s); serviceName.MatchString(s) && !known {
			p.Add(true, "unknown service %q (known: %s)", s, strings.Join(system.Names(), ", "))
		}
		p.Add(seen[s], "service %q is listed twice", s)
		seen[s] = true
	}
	for name, n := range c.Replicas {
		switch {
		case !seen[name]:
			p.Add(true, "replicas: %q is not a service this run starts", name)
		case name == Gateway && n != 1:
			p.Add(true, "replicas: the gateway runs once (it owns the public address)")
		default:
			p.Add(n < 1 || n > MaxReplicas, "replicas: %s=%d is not between 1 and %d", name, n, MaxReplicas)
		}
	}
	if c.NATSURL != "" {
		u, err := url.Parse(c.NATSURL)
		p.Add(err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Host == "",
			"NATS URL %q is not nats://host:port", c.NATSURL)
	}
	p.Add(c.Registry != RegistryStatic && c.Registry != RegistryEtcd, "registry %q is not static or etcd", c.Registry)
	p.Add(c.EtcdURL != "" && c.Registry != RegistryEtcd, "an etcd URL needs --registry etcd")
	if c.EtcdURL != "" {
		u, err := url.Parse(c.EtcdURL)
		p.Add(err != nil || u.Scheme != "http" || u.Host == "", "etcd URL %q is not http://host:port", c.EtcdURL)
	}
	p.Add(!seen[Identity], "services must include %s", Identity)
	p.Add(!seen[Gateway], "services must include %s", Gateway)
	p.Add(c.Stdout == nil, "stdout is not set")
	p.Add(!slices.Contains([]string{LogFormatAuto, LogFormatText, LogFormatJSON}, c.LogFormat),
		"log format %q must be text, json or auto", c.LogFormat)
	p.Add(c.ReadyTimeout <= 0, "ready timeout must be positive")
	p.Add(c.StopTimeout <= 0, "stop timeout must be positive")
	return p.Err()
}

// textFormat is how log lines are rewritten for a person, or nil when they
// go out as JSON: with LogFormatAuto, when Stdout is a terminal.
func (c Config) textFormat() *textFormat {
	if c.LogFormat == LogFormatJSON || c.LogFormat != LogFormatText && !isTerminal(c.Stdout) {
		return nil
	}
	return &textFormat{color: c.Color, keepTraceIDs: tracesExported(c.Env)}
}

// isTerminal reports whether w is a terminal (a character device), the
// test `mercato up` also colours by; NO_COLOR and TERM=dumb turn colours
// off, not the text format.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

// tracesExported reports whether env makes the services export traces
// (observability.SetupTracing), so trace ids in logs can be looked up.
func tracesExported(env []string) bool {
	for _, kv := range env {
		key, value, _ := strings.Cut(kv, "=")
		if value != "" && (key == "OTEL_EXPORTER_OTLP_ENDPOINT" || key == "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
			return true
		}
	}
	return false
}

// Command mercato is the one binary of the mercato system. `mercato up` runs
// the whole system on one machine; `mercato serve <service>` runs one
// service configured from the environment (what a container runs);
// `mercato migrate <service>` applies one service's schema migrations;
// `mercato events` lists and replays the events that could not be
// delivered.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/mercato-dev/mercato/internal/launcher"
	"github.com/mercato-dev/mercato/internal/platform/config"
	"github.com/mercato-dev/mercato/internal/platform/observability"
	"github.com/mercato-dev/mercato/internal/system"
)

// version is stamped at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

// Exit codes: 2 for a usage or configuration mistake (fix the command
// line or the environment), 1 for anything that failed at run time.
const (
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "up":
		return runUp(args[1:], stdout, stderr)
	case "serve":
		return runServe(args[1:], stdout, stderr)
	case "migrate":
		return runMigrate(args[1:], stdout, stderr)
	case "events":
		return runEvents(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "mercato", versionString())
		return 0
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "mercato: unknown command %q\n\n", args[0])
		usage(stderr)
		return exitUsage
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `mercato is an e-commerce backend built as Go microservices, in one binary.

Usage:
  mercato up [flags]          run the whole system on this machine (see mercato up -h)
  mercato serve <service>     run one service, configured from the environment
  mercato migrate <service>   apply one service's database migrations
  mercato events ...          list and replay dead letters and dead outbox rows (see mercato events -h)
  mercato version             print the version
  mercato help                print this help

Services: %s
`, strings.Join(serviceNames(), ", "))
}

func serviceNames() []string { return slices.Sorted(slices.Values(system.Names())) }

func versionString() string {
	v := version
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
	}
	return v
}

// signalContext is cancelled by the first SIGINT or SIGTERM. After that
// the default handling is back, so a second Ctrl-C ends the process at once
// instead of waiting for a graceful stop.
func signalContext() (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	return ctx, stop
}

func runUp(args []string, stdout, stderr io.Writer) int {
	env := config.NewEnv()
	fs := flag.NewFlagSet("mercato up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: mercato up [flags]

Runs the whole system on this machine: an embedded NATS JetStream server,
then every service as its own process, ready in a few seconds; seeds a demo
catalog; Ctrl-C stops everything gracefully.

Environment: MERCATO_ADMIN_EMAIL and MERCATO_ADMIN_PASSWORD set the
administrator (the password is otherwise generated once and kept in the
data directory); every other variable is passed on to the services.

Flags:
`)
		fs.PrintDefaults()
	}
	addr := fs.String("addr", launcher.DefaultAddr, "public `address` of the API gateway")
	dataDir := fs.String("data", "./"+launcher.DefaultDataDir, "`directory` for the SQLite files, the NATS store and the generated admin password")
	postgres := fs.String("postgres", "", "PostgreSQL server `URL`; each service then keeps its data in its own database there instead of SQLite")
	dbPrefix := fs.String("db-prefix", launcher.DefaultDBPrefix, "`prefix` of each service's PostgreSQL database name")
	adminEmail := fs.String("admin-email", env.String("MERCATO_ADMIN_EMAIL", launcher.DefaultAdminEmail), "administrator's `email`")
	noSeed := fs.Bool("no-seed", false, "leave an empty catalog empty instead of adding the demo products")
	replicas := fs.String("replicas", "", "how many `instances` of each service to run: a count for every service (2) or service=count pairs (catalog=3,orders=2); 1 to 16, the gateway once")
	natsURL := fs.String("nats", "", "external NATS server `URL` (nats://host:port, JetStream on) instead of the embedded one")
	registryKind := fs.String("registry", launcher.RegistryStatic, "how services find each other: static (given their neighbours' addresses) or etcd (each instance registers itself; an embedded etcd unless --etcd names one)")
	etcdURL := fs.String("etcd", "", "external etcd client `URL` (http://host:2379) for --registry etcd")
	logFormat := fs.String("log-format", launcher.LogFormatAuto, "`format` of the log lines: text (readable), json (as the services write them) or auto (text on a terminal, else json)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mercato up: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return exitUsage
	}

	level, levelErr := logLevel(env.String("LOG_LEVEL", "info"))
	replicaCounts, replicasErr := launcher.ParseReplicas(*replicas)
	l, err := launcher.New(launcher.Config{
		Replicas:      replicaCounts,
		NATSURL:       *natsURL,
		Registry:      *registryKind,
		EtcdURL:       *etcdURL,
		Addr:          *addr,
		DataDir:       *dataDir,
		PostgresURL:   *postgres,
		DBPrefix:      *dbPrefix,
		AdminEmail:    *adminEmail,
		AdminPassword: env.String("MERCATO_ADMIN_PASSWORD", ""),
		SkipSeed:      *noSeed,
		Stdout:        stdout,
		Color:         colorful(stdout),
		LogFormat:     *logFormat,
		LogLevel:      level,
		Env:           os.Environ(),
	})
	if err = errors.Join(levelErr, replicasErr, err); err != nil {
		printProblems(stderr, "up", err)
		return exitUsage
	}
	ctx, stop := signalContext()
	defer stop()
	if err := l.Run(ctx); err != nil {
		if misconfigured(err) {
			printProblems(stderr, "up", err)
			return exitUsage
		}
		fmt.Fprintf(stderr, "mercato: %v\n", err)
		return exitFailure
	}
	return 0
}

// colorful reports whether w is a terminal that should get colours.
func colorful(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

// serviceArg returns the one service named by args, or prints usage.
func serviceArg(command string, args []string, stdout, stderr io.Writer) (system.Service, int) {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		fmt.Fprintf(stdout, "Usage: mercato %s <service>\n\nServices: %s\n", command, strings.Join(serviceNames(), ", "))
		return system.Service{}, 0
	}
	if len(args) != 1 {
		fmt.Fprintf(stderr, "mercato %s: name one service\n\n", command)
		usage(stderr)
		return system.Service{}, exitUsage
	}
	svc, ok := system.Lookup(args[0])
	if !ok {
		fmt.Fprintf(stderr, "mercato %s: unknown service %q\n\n", command, args[0])
		usage(stderr)
		return system.Service{}, exitUsage
	}
	return svc, -1
}

func runServe(args []string, stdout, stderr io.Writer) int {
	svc, code := serviceArg("serve", args, stdout, stderr)
	if code >= 0 {
		return code
	}
	name := svc.Name
	env := config.NewEnv()
	level, err := logLevel(env.String("LOG_LEVEL", "info"))
	if err != nil {
		printProblems(stderr, name, err)
		return exitUsage
	}
	// A service's live heap is small and nearly all it allocates is
	// per-request garbage, so a higher GC target trades a few MB under load
	// for a good share of CPU (idle memory is unchanged). GOGC in the
	// environment still wins; the gateway picks a higher target itself.
	if env.String("GOGC", "") == "" {
		debug.SetGCPercent(200)
	}
	ctx, stop := signalContext()
	defer stop()

	// Log lines are batched (at most logFlushDelay) so that a busy
	// service does not pay a write(2) per line; warnings and errors are
	// written at once, and whatever waits is written before exit.
	logOut := observability.NewLogBuffer(stdout, logFlushDelay, logBufferSize)
	defer func() { _ = logOut.Close() }()
	logger := observability.NewLogger(logOut, name, level)
	shutdownTracing, err := observability.SetupTracing(ctx, name)
	if err != nil {
		fmt.Fprintf(stderr, "mercato: %s: %v\n", name, err)
		return exitFailure
	}
	defer func() {
		flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = shutdownTracing(flushCtx)
	}()

	err = svc.Serve(ctx, env, system.Runtime{Logger: logger, LogOut: logOut})
	switch {
	case err == nil:
		return 0
	case misconfigured(err):
		printProblems(stderr, name, err)
		return exitUsage
	default:
		logger.ErrorContext(ctx, "service failed", "error", err.Error())
		fmt.Fprintf(stderr, "mercato: %s: %v\n", name, err)
		return exitFailure
	}
}

// How long and how much a service's log lines may wait before they are
// written; a person reading the log cannot tell 50 ms.
const (
	logFlushDelay = 50 * time.Millisecond
	logBufferSize = 32 << 10
)

func runMigrate(args []string, stdout, stderr io.Writer) int {
	svc, code := serviceArg("migrate", args, stdout, stderr)
	if code >= 0 {
		return code
	}
	name := svc.Name
	if svc.Migrate == nil {
		fmt.Fprintf(stdout, "%s: stateless, no database to migrate\n", name)
		return 0
	}
	env := config.NewEnv()
	ctx, stop := signalContext()
	defer stop()
	err := svc.Migrate(ctx, env)
	switch {
	case err == nil:
		fmt.Fprintf(stdout, "%s: migrations applied\n", name)
		return 0
	case misconfigured(err):
		printProblems(stderr, name, err)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "mercato: migrate %s: %v\n", name, err)
		return exitFailure
	}
}

func logLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("LOG_LEVEL: %q is not one of debug, info, warn, error", s)
}

// misconfigured tells a configuration problem, which every service
// reports as a *config.Error before it starts anything, from a run-time
// failure.
func misconfigured(err error) bool {
	var cfgErr *config.Error
	return errors.As(err, &cfgErr)
}

// printProblems lists every configuration problem on its own line:
//
//	mercato: catalog is misconfigured:
//	  - DATABASE_URL: ...
func printProblems(w io.Writer, name string, err error) {
	fmt.Fprintf(w, "mercato: %s is misconfigured:\n", name)
	for _, p := range problemLines(err) {
		fmt.Fprintf(w, "  - %s\n", p)
	}
}

// problemLines flattens joined errors into one line per problem, keeping
// the prefixes nested Validate results were wrapped with ("database: ...")
// but not the outermost one, which only names the service.
func problemLines(err error) []string {
	var lines []string
	var walk func(prefix string, err error)
	walk = func(prefix string, err error) {
		if joined, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range joined.Unwrap() {
				walk(prefix, e)
			}
			return
		}
		if inner := errors.Unwrap(err); inner != nil {
			if head, ok := strings.CutSuffix(err.Error(), inner.Error()); ok {
				walk(prefix+head, inner)
				return
			}
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			if line != "" {
				lines = append(lines, prefix+line)
			}
		}
	}
	// The outermost wrapper only names the service ("catalog configuration:
	// ..."); the header already says which service it is.
	top := err
	if inner := errors.Unwrap(err); inner != nil {
		if _, ok := inner.(interface{ Unwrap() []error }); ok {
			top = inner
		}
	}
	walk("", top)
	return lines
}

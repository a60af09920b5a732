package main

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/platform/config"
	"github.com/mercato-dev/mercato/internal/system"
)

func runArgs(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestUsage(t *testing.T) {
	code, _, stderr := runArgs()
	require.Equal(t, exitUsage, code)
	require.Contains(t, stderr, "Usage:")

	code, stdout, _ := runArgs("help")
	require.Equal(t, 0, code)
	require.Contains(t, stdout, "mercato up [flags]")
	require.Contains(t, stdout, "Services: "+strings.Join(slices.Sorted(slices.Values(system.Names())), ", ")+"\n")

	code, _, stderr = runArgs("launch")
	require.Equal(t, exitUsage, code)
	require.Contains(t, stderr, `mercato: unknown command "launch"`)
	require.Contains(t, stderr, "Services: ")

	code, stdout, _ = runArgs("version")
	require.Equal(t, 0, code)
	require.Contains(t, stdout, "mercato dev")
}

func TestUnknownService(t *testing.T) {
	for _, command := range []string{"serve", "migrate"} {
		code, _, stderr := runArgs(command, "warehouse")
		require.Equal(t, exitUsage, code)
		require.Contains(t, stderr, "mercato "+command+`: unknown service "warehouse"`)
		require.Contains(t, stderr, "Services: cart, catalog, gateway, identity")

		code, _, stderr = runArgs(command)
		require.Equal(t, exitUsage, code)
		require.Contains(t, stderr, "name one service")
	}
}

func TestServeReportsEveryConfigurationProblem(t *testing.T) {
	t.Setenv("MERCATO_DB_MAX_CONNS", "many")
	t.Setenv("MERCATO_GRPC_ADDR", "nowhere")
	code, stdout, stderr := runArgs("serve", "catalog")
	require.Equal(t, exitUsage, code)
	require.Equal(t, "mercato: catalog is misconfigured:\n"+
		"  - MERCATO_DB_MAX_CONNS: \"many\" is not an integer\n"+
		"  - server: listen address \"nowhere\" is not host:port\n", stderr)
	require.Empty(t, stdout, "nothing started, so nothing logged")
}

func TestServeRefusesABadRegistry(t *testing.T) {
	t.Setenv("MERCATO_REGISTRY", "consul")
	code, _, stderr := runArgs("serve", "cart")
	require.Equal(t, exitUsage, code)
	require.Contains(t, stderr, "mercato: cart is misconfigured:\n")
	require.Contains(t, stderr, "consul")

	t.Setenv("MERCATO_REGISTRY", "etcd")
	code, _, stderr = runArgs("serve", "catalog")
	require.Equal(t, exitUsage, code)
	require.Contains(t, stderr, "endpoint")
}

func TestServeRefusesAnUnknownLogLevel(t *testing.T) {
	t.Setenv("LOG_LEVEL", "chatty")
	code, _, stderr := runArgs("serve", "identity")
	require.Equal(t, exitUsage, code)
	require.Equal(t, "mercato: identity is misconfigured:\n  - LOG_LEVEL: \"chatty\" is not one of debug, info, warn, error\n", stderr)
}

func TestMigrateReportsConfigurationProblems(t *testing.T) {
	t.Setenv("MERCATO_DB_MAX_CONNS", "many")
	code, _, stderr := runArgs("migrate", "catalog")
	require.Equal(t, exitUsage, code)
	require.Contains(t, stderr, "mercato: catalog is misconfigured:\n  - MERCATO_DB_MAX_CONNS: \"many\" is not an integer\n")
}

func TestUpReportsConfigurationProblems(t *testing.T) {
	code, _, stderr := runArgs("up", "--addr", "8080", "--db-prefix", "Bad-Prefix", "--log-format", "yaml")
	require.Equal(t, exitUsage, code)
	require.Contains(t, stderr, "mercato: up is misconfigured:\n")
	require.Contains(t, stderr, `  - address "8080" is not host:port`)
	require.Contains(t, stderr, `  - database prefix "Bad-Prefix"`)
	require.Contains(t, stderr, `  - log format "yaml" must be text, json or auto`)

	code, _, _ = runArgs("up", "--no-such-flag")
	require.Equal(t, exitUsage, code)

	for flagValue, want := range map[string]string{
		"warehouse=2": `  - replicas: unknown service "warehouse"`,
		"catalog=0":   "  - replicas: catalog=0 is not between 1 and 16",
		"17":          "  - replicas 17 is not between 1 and 16",
		"catalog:2":   `  - replicas "catalog:2": want a count (2) or service=count pairs`,
		"gateway=2":   "  - replicas: the gateway runs once (it owns the public address)",
	} {
		code, stdout, stderr := runArgs("up", "--addr", "127.0.0.1:0", "--data", t.TempDir(), "--replicas", flagValue)
		require.Equal(t, exitUsage, code, flagValue)
		require.Contains(t, stderr, "mercato: up is misconfigured:\n"+want, flagValue)
		require.Empty(t, stdout, "nothing started")
	}
}

func TestUpRefusesBadRegistryFlags(t *testing.T) {
	for args, want := range map[string][]string{
		"--registry consul":                         {`  - registry "consul" is not static or etcd`},
		"--etcd http://127.0.0.1:2379":              {"  - an etcd URL needs --registry etcd"},
		"--registry etcd --etcd 127.0.0.1:2379":     {`  - etcd URL "127.0.0.1:2379" is not http://host:port`},
		"--registry etcd --etcd http://127.0.0.1:1": {"  - cannot reach etcd at http://127.0.0.1:1"},
	} {
		code, stdout, stderr := runArgs(append([]string{"up", "--addr", "127.0.0.1:0", "--data", t.TempDir(), "--log-format", "json"}, strings.Fields(args)...)...)
		require.Equal(t, exitUsage, code, "%s: %s", args, stderr)
		for _, w := range want {
			require.Contains(t, stderr, w, args)
		}
		require.NotContains(t, stdout, "service started", args)
	}
}

// An external NATS that does not answer is a configuration problem,
// reported before any service starts.
func TestUpRefusesAnUnreachableNATS(t *testing.T) {
	code, stdout, stderr := runArgs("up", "--addr", "127.0.0.1:0", "--data", t.TempDir(), "--nats", "nats://127.0.0.1:1", "--log-format", "json")
	require.Equal(t, exitUsage, code, stderr)
	require.Contains(t, stderr, "mercato: up is misconfigured:\n  - cannot reach NATS at nats://127.0.0.1:1")
	require.NotContains(t, stdout, "service started")
}

func TestProblemLines(t *testing.T) {
	err := fmt.Errorf("catalog configuration: %w", errors.Join(
		errors.New("MERCATO_DB_MAX_CONNS: \"x\" is not an integer"),
		fmt.Errorf("server: %w", errors.Join(errors.New("gRPC listen address is empty"), errors.New("shutdown timeout must not be negative"))),
		fmt.Errorf("database: %w", errors.New("database URL is empty")),
	))
	require.Equal(t, []string{
		`MERCATO_DB_MAX_CONNS: "x" is not an integer`,
		"server: gRPC listen address is empty",
		"server: shutdown timeout must not be negative",
		"database: database URL is empty",
	}, problemLines(err))

	require.Equal(t, []string{"a", "b"}, problemLines(errors.Join(errors.New("a"), errors.New("b"))))
	require.Equal(t, []string{"open sqlite: disk full"}, problemLines(fmt.Errorf("open sqlite: %w", errors.New("disk full"))))
}

func TestMisconfigured(t *testing.T) {
	var p config.Problems
	p.Add(true, "rate limit must not be negative")
	require.True(t, misconfigured(fmt.Errorf("gateway configuration: %w", p.Err())), "a Validate result, however wrapped")

	malformed := config.NewEnvFrom(map[string]string{"MERCATO_DB_MAX_CONNS": "x"})
	malformed.Int("MERCATO_DB_MAX_CONNS", 0)
	require.True(t, misconfigured(fmt.Errorf("catalog configuration: %w", malformed.Err())))

	require.False(t, misconfigured(fmt.Errorf("listen gRPC: %w", errors.New("address in use"))))
	require.False(t, misconfigured(errors.Join(errors.New("close db: busy"), errors.New("drain NATS: timeout"))),
		"a run-time failure that joins several errors is not a configuration problem")
}

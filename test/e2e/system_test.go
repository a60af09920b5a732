package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// startTimeout bounds how long `mercato up` may take to print its banner.
// The target is a few seconds; the margin is for a loaded CI machine.
const startTimeout = 30 * time.Second

// stopTimeout bounds a graceful stop of the whole system.
const stopTimeout = 30 * time.Second

// options say how to start the system.
type options struct {
	// dataDir is reused across runs when set; a fresh one otherwise.
	dataDir string
	// adminPassword is passed as MERCATO_ADMIN_PASSWORD; empty lets the
	// launcher generate (or reuse) one.
	adminPassword string
	// postgres and dbPrefix select PostgreSQL storage.
	postgres string
	dbPrefix string
	// replicas is passed as --replicas ("catalog=3", "2").
	replicas string
	// natsURL is passed as --nats: an external NATS server.
	natsURL string
}

// system is a running `mercato up`.
type system struct {
	api
	cmd           *exec.Cmd
	out           *logBuffer
	exited        chan struct{}
	dataDir       string
	adminEmail    string
	adminPassword string
}

// logBuffer collects the launcher's output; safe to read while written.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var bannerAPI = regexp.MustCompile(`(?m)^\s+API\s+(\S+)$`)

var bannerPassword = regexp.MustCompile(`(?m)^\s+Password\s+(\S+)$`)

// startSystem runs `mercato up` and returns once its banner is printed and
// the gateway answers /healthz. The system is stopped when the test ends.
func startSystem(t *testing.T, opts options) *system {
	t.Helper()
	if opts.dataDir == "" {
		opts.dataDir = t.TempDir()
	}
	// Port 0: the launcher picks a free port and prints it in the banner.
	args := []string{"up", "--addr", "127.0.0.1:0", "--data", opts.dataDir}
	if opts.postgres != "" {
		args = append(args, "--postgres", opts.postgres, "--db-prefix", opts.dbPrefix)
	}
	if opts.replicas != "" {
		args = append(args, "--replicas", opts.replicas)
	}
	if opts.natsURL != "" {
		args = append(args, "--nats", opts.natsURL)
	}
	cmd := exec.Command(mercatoBin, args...)
	// Rate limits are tested where they live; here they would only make
	// a test that logs in often flaky.
	cmd.Env = append(os.Environ(),
		"MERCATO_RATE_LIMIT_RPS=0",
		"MERCATO_LOGIN_RATE_PER_MIN=0",
		"MERCATO_LOGIN_IP_RATE_PER_MIN=0",
		"MERCATO_ADMIN_PASSWORD="+opts.adminPassword,
	)
	out := &logBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = sysProcAttr()
	require.NoError(t, cmd.Start())

	s := &system{
		api:        api{client: &http.Client{Timeout: 15 * time.Second}},
		cmd:        cmd,
		out:        out,
		exited:     make(chan struct{}),
		dataDir:    opts.dataDir,
		adminEmail: "admin@mercato.local",
	}
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		s.stop(t)
		if t.Failed() {
			t.Logf("mercato up output (last %d lines):\n%s", failureLogLines, lastLines(s.out.String(), failureLogLines))
		}
	})

	deadline := time.Now().Add(startTimeout)
	for !strings.Contains(out.String(), "Ctrl-C to stop.") {
		select {
		case <-s.exited:
			t.Fatalf("mercato up exited during start-up (%s):\n%s", cmd.ProcessState, out.String())
		case <-time.After(20 * time.Millisecond):
		}
		require.True(t, time.Now().Before(deadline), "no banner after %s:\n%s", startTimeout, out.String())
	}
	api := bannerAPI.FindStringSubmatch(out.String())
	require.NotNil(t, api, "the banner shows the API URL:\n%s", out.String())
	s.base = api[1]
	resp, err := s.client.Get(s.base + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "gateway /healthz")

	m := bannerPassword.FindStringSubmatch(out.String())
	require.NotNil(t, m, "the banner shows the admin password:\n%s", out.String())
	s.adminPassword = m[1]
	return s
}

// stop sends SIGTERM and waits for `mercato up` to exit, killing it (and
// failing the test) if it does not stop in time.
func (s *system) stop(t *testing.T) {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		_ = s.cmd.Process.Kill()
		<-s.exited
		t.Errorf("mercato up did not stop within %s", stopTimeout)
	}
}

// failureLogLines is how much of the system's output a failed test shows.
const failureLogLines = 150

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// launcherLog is one of the launcher's own log lines.
type launcherLog struct {
	Msg      string `json:"msg"`
	Name     string `json:"name"`
	PID      int    `json:"pid"`
	Status   string `json:"status"`
	HTTPAddr string `json:"http_addr"`
	Restarts int    `json:"restarts"`
}

// launcherLogs parses the lines the launcher itself wrote ("mercato  | {...}").
func (s *system) launcherLogs(t *testing.T) []launcherLog {
	t.Helper()
	var logs []launcherLog
	for _, line := range strings.Split(s.out.String(), "\n") {
		prefix, body, ok := strings.Cut(line, " | ")
		if !ok || strings.TrimSpace(prefix) != "mercato" {
			continue
		}
		var l launcherLog
		require.NoError(t, json.Unmarshal([]byte(body), &l), "launcher log line %q", line)
		logs = append(logs, l)
	}
	return logs
}

// servicePIDs are the process ids of the services, from the launcher's log.
func (s *system) servicePIDs(t *testing.T) map[string]int {
	t.Helper()
	pids := map[string]int{}
	for _, l := range s.launcherLogs(t) {
		if l.Msg == "service started" {
			pids[l.Name] = l.PID
		}
	}
	return pids
}

// adminAddrs are the admin (HTTP) addresses of the processes by log label
// ("catalog-2"), from the launcher's log: /metrics, /readyz.
func (s *system) adminAddrs(t *testing.T) map[string]string {
	t.Helper()
	addrs := map[string]string{}
	for _, l := range s.launcherLogs(t) {
		if l.Msg == "service started" {
			addrs[l.Name] = l.HTTPAddr
		}
	}
	return addrs
}

// launcherSaid reports whether the launcher logged msg about the process
// labelled name.
func (s *system) launcherSaid(t *testing.T, msg, name string) bool {
	t.Helper()
	return slices.ContainsFunc(s.launcherLogs(t), func(l launcherLog) bool { return l.Msg == msg && l.Name == name })
}

// processGone reports whether no process with pid exists any more.
func processGone(pid int) bool {
	return syscall.Kill(pid, 0) == syscall.ESRCH
}

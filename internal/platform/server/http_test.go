package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestHTTPServerLifecycle(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		_, _ = w.Write([]byte("public"))
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "test_total", Help: "A test counter."}))
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := NewHTTP(t.Context(), "test", HTTPConfig{Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second}, handler, logger, reg)
	require.NoError(t, err)
	var depDown atomic.Bool
	s.AddCheck("dependency", func(context.Context) error {
		if depDown.Load() {
			return errors.New("unreachable")
		}
		return nil
	})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	code, body := get(t, "http://"+s.Addr()+"/")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "public", body)
	code, _ = get(t, "http://"+s.AdminAddr()+"/healthz")
	require.Equal(t, http.StatusOK, code)
	code, _ = get(t, "http://"+s.AdminAddr()+"/readyz")
	require.Equal(t, http.StatusOK, code)
	code, body = get(t, "http://"+s.AdminAddr()+"/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "test_total")

	depDown.Store(true)
	code, body = get(t, "http://"+s.AdminAddr()+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "dependency: unreachable\n", body)
	depDown.Store(false)

	slow := make(chan int, 1)
	go func() {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+s.Addr()+"/slow", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			slow <- 0
			return
		}
		_ = resp.Body.Close()
		slow <- resp.StatusCode
	}()
	<-entered
	cancel()
	require.Eventually(t, func() bool {
		return strings.Contains(strings.Join(mapValues(s.Ready(context.Background())), ","), "shutting down")
	}, 5*time.Second, 5*time.Millisecond, "readiness fails while draining")
	close(release)
	require.Equal(t, http.StatusOK, <-slow, "the in-flight request finishes")
	require.NoError(t, <-done)
}

func mapValues(m map[string]string) []string {
	var vs []string
	for _, v := range m {
		vs = append(vs, v)
	}
	return vs
}

func TestHTTPConfigValidate(t *testing.T) {
	err := HTTPConfig{Addr: "nope", ShutdownTimeout: -1}.Validate()
	require.ErrorContains(t, err, `listen address "nope" is not host:port`)
	require.ErrorContains(t, err, "admin listen address is empty")
	require.ErrorContains(t, err, "shutdown timeout must not be negative")
}

package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	catalogv1 "github.com/mercato-dev/mercato/internal/gen/catalog/v1"
)

// bareEnv, when set to "listen-address catalog-address", makes this program
// serve the bare reference instead of benchmarking.
const bareEnv = "MERCATO_BENCH_BARE_GATEWAY"

// serveBare is the reference for the gateway's own cost: grpc-gateway's
// defaults in front of catalog's gRPC GetProduct, nothing else (no
// middleware, no logs, no metrics, no tracing, no deadline, no retries).
// It runs as its own process, like the gateway.
func serveBare(spec string) error {
	var listen, catalog string
	if _, err := fmt.Sscan(spec, &listen, &catalog); err != nil {
		return fmt.Errorf("%s=%q: want \"listen-address catalog-address\"", bareEnv, spec)
	}
	conn, err := grpc.NewClient(catalog, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	mux := runtime.NewServeMux()
	if err := catalogv1.RegisterCatalogServiceHandler(context.Background(), mux, conn); err != nil {
		return err
	}
	srv := &http.Server{Addr: listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// startBare runs the bare reference in a child process and waits until it
// serves the product. stop ends it.
func startBare(ctx context.Context, catalogAddr, productID string) (base string, stop func(), err error) {
	addr, err := freeAddr(ctx)
	if err != nil {
		return "", nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = append(os.Environ(), bareEnv+"="+addr+" "+catalogAddr)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start the bare gateway: %w", err)
	}
	stop = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}
	base = "http://" + addr
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/products/"+productID, nil)
		if err != nil {
			stop()
			return "", nil, err
		}
		resp, err := client.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base, stop, nil
			}
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("the bare gateway at %s did not serve the product (last error: %w)", addr, err)
		}
		select {
		case <-ctx.Done():
			stop()
			return "", nil, ctx.Err()
		case <-tick.C:
		}
	}
}

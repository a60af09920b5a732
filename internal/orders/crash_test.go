//go:build unix

package orders_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/mercato-dev/mercato/internal/gen/orders/v1"
	"github.com/mercato-dev/mercato/internal/orders"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/auth/authtest"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
	"github.com/mercato-dev/mercato/internal/platform/events"
	"github.com/mercato-dev/mercato/internal/platform/events/natstest"
	"github.com/mercato-dev/mercato/internal/platform/server"
)

// Environment of the child process TestCrashChild runs in.
const (
	envChild     = "ORDERS_CRASH_CHILD"
	envDB        = "ORDERS_CRASH_DB"
	envNATS      = "ORDERS_CRASH_NATS"
	envJWKS      = "ORDERS_CRASH_JWKS"
	envNeighbour = "ORDERS_CRASH_NEIGHBOURS"
	envToken     = "ORDERS_CRASH_SERVICE_TOKEN"
	envPoint     = "ORDERS_CRASH_AFTER"
)

func crashConfig(dbURL, natsURL, jwksURL, neighbours, token, point string) orders.Config {
	return orders.Config{
		Server: server.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second},
		DB:     db.Config{URL: dbURL},
		Events: events.Config{URL: natsURL}, Keys: auth.KeysConfig{JWKSURL: jwksURL},
		CatalogAddr: neighbours, CartAddr: neighbours, InventoryAddr: neighbours, PaymentsAddr: neighbours,
		ServiceToken:     func(context.Context) (string, time.Duration, error) { return token, 10 * time.Minute, nil },
		SagaPollInterval: 50 * time.Millisecond,
		InstanceID:       "crash-test",
		CrashAfter:       point,
	}
}

// TestCrashChild is the process TestCrashRecovery kills: it runs the
// service with a CrashAfter fault until the fault kills it.
func TestCrashChild(t *testing.T) {
	if os.Getenv(envChild) == "" {
		t.Skip("run by TestCrashRecovery")
	}
	cfg := crashConfig(os.Getenv(envDB), os.Getenv(envNATS), os.Getenv(envJWKS), os.Getenv(envNeighbour),
		os.Getenv(envToken), os.Getenv(envPoint))
	svc, err := orders.New(context.Background(), cfg, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	require.NoError(t, err)
	fmt.Printf("GRPC_ADDR=%s\n", svc.GRPCAddr())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, svc.Run(ctx))
	t.Fatal("the fault never fired")
}

// TestCrashRecovery kills a real orders process (SIGKILL from the
// CrashAfter fault) at durable points of a checkout, restarts the service
// on the same database, and checks that the order is confirmed exactly
// once: one capture, stock sold once, each event recorded once.
func TestCrashRecovery(t *testing.T) {
	if os.Getenv(envChild) != "" {
		t.Skip("inside the child")
	}
	points := []string{"before:StockReserved", "StockReserved", "before:PaymentAuthorized", "before:PaymentCaptured", "PaymentCaptured", "OrderConfirmed"}
	engines := map[string]func(testing.TB) string{"sqlite": dbtest.SQLiteURL, "postgres": dbtest.PostgresURL}
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			for _, point := range points {
				t.Run(point, func(t *testing.T) {
					// A fresh database per point.
					testCrashRecovery(t, engines[engine](t), point)
				})
			}
		})
	}
}

func testCrashRecovery(t *testing.T, dbURL, point string) {
	natsURL := natstest.Start(t)
	issuer := authtest.New(t)
	n := serveNeighbours(t, issuer)
	jwks := httptest.NewServer(issuer.JWKSHandler())
	t.Cleanup(jwks.Close)
	token := issuer.Token("orders", auth.RoleService)

	// The first life: the process dies at point.
	child := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	child.Env = append(os.Environ(), envChild+"=1", envDB+"="+dbURL, envNATS+"="+natsURL, envJWKS+"="+jwks.URL,
		envNeighbour+"="+n.addr, envToken+"="+token, envPoint+"="+point)
	stdout, err := child.StdoutPipe()
	require.NoError(t, err)
	child.Stderr = io.Discard
	require.NoError(t, child.Start())
	exited := make(chan error, 1)
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "GRPC_ADDR="); ok {
				addr <- a
			}
		}
		exited <- child.Wait()
	}()
	var grpcAddr string
	select {
	case grpcAddr = <-addr:
	case err := <-exited:
		t.Fatalf("the child exited before serving: %v", err)
	case <-time.After(30 * time.Second):
		_ = child.Process.Kill()
		t.Fatal("the child did not start")
	}

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	c := &component{client: ordersv1.NewOrdersServiceClient(conn), issuer: issuer, n: n}
	place := func() (*ordersv1.Order, error) {
		return c.client.PlaceOrder(c.as(t, "u-crash", auth.RoleCustomer, "crash-1"),
			placeRequest(&ordersv1.OrderItemInput{ProductId: "prod-mug", Quantity: 3}))
	}
	// The saga starts as soon as the order commits, so at the earliest
	// points the process may die before its answer is out: the client then
	// sees UNAVAILABLE, as a real one would, and retries below.
	placed, placeErr := place()
	if placeErr != nil {
		require.Equal(t, codes.Unavailable, status.Code(placeErr), "%v", placeErr)
	}

	select {
	case err := <-exited:
		var exit *exec.ExitError
		require.True(t, errors.As(err, &exit), "the child died: %v", err)
		ws, ok := exit.Sys().(syscall.WaitStatus)
		require.True(t, ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL, "killed by SIGKILL, got %v", err)
	case <-time.After(30 * time.Second):
		_ = child.Process.Kill()
		t.Fatal("the fault did not fire")
	}

	// The second life: the same replica restarts on the same database.
	svc, err := orders.New(t.Context(), crashConfig(dbURL, natsURL, jwks.URL, n.addr, token, ""),
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()
	conn2, err := grpc.NewClient(svc.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn2.Close()
	c.client = ordersv1.NewOrdersServiceClient(conn2)
	// Retrying with the same idempotency key finds the order the first
	// life placed, whether or not that life answered.
	again, err := place()
	require.NoError(t, err)
	if placeErr == nil {
		require.Equal(t, placed.GetId(), again.GetId())
	}
	placed = again
	userCtx := c.as(t, "u-crash", auth.RoleCustomer, "")
	c.waitStatus(t, userCtx, placed.GetId(), "confirmed")

	require.Equal(t, 1, n.pay.Captures(placed.GetId()), "exactly one capture")
	require.Len(t, n.pay.Payments(placed.GetId()), 1, "one payment")
	stock := n.inv.Stock("SKU-MUG")
	require.Equal(t, 3, stock.Sold)
	require.Equal(t, 10, stock.OnHand+stock.Sold, "on_hand + sold = initial")
	require.Zero(t, stock.Reserved)
	evs, err := c.client.ListOrderEvents(userCtx, &ordersv1.ListOrderEventsRequest{Id: placed.GetId()})
	require.NoError(t, err)
	var names []string
	for _, ev := range evs.GetEvents() {
		names = append(names, ev.GetType())
	}
	require.Equal(t, []string{"OrderPlaced", "StockReserved", "PaymentAuthorized", "StockCommitted", "PaymentCaptured", "OrderConfirmed"}, names)
	m, _ := (&component{js: jetstreamFor(t, natsURL)}).event(t, "order.confirmed", placed.GetId())
	require.Equal(t, "u-crash", m.UserID)
}

func jetstreamFor(t *testing.T, natsURL string) jetstream.JetStream {
	t.Helper()
	_, js := natstest.Connect(t, natsURL)
	return js
}

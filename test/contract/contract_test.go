// Package contract_test runs orders' contract suites for its neighbours
// (internal/orders/orderstest) against the real inventory and payments
// services: each started in-process on free ports, on SQLite in a
// temporary directory (payments with an embedded NATS), and called
// through orders' own gRPC adapters with a service token, as the orders
// service calls them. The same suites run against orders' fakes, so where
// a fake and its service disagree, one of the two runs fails.
//
// It is a neutral place: a service must not import another's internals,
// and this test imports orders' and its neighbours'.
package contract_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	inventoryv1 "github.com/mercato-dev/mercato/internal/gen/inventory/v1"
	paymentsv1 "github.com/mercato-dev/mercato/internal/gen/payments/v1"
	"github.com/mercato-dev/mercato/internal/inventory"
	"github.com/mercato-dev/mercato/internal/orders/adapters"
	"github.com/mercato-dev/mercato/internal/orders/orderstest"
	"github.com/mercato-dev/mercato/internal/payments"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/auth/authtest"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
	"github.com/mercato-dev/mercato/internal/platform/events"
	"github.com/mercato-dev/mercato/internal/platform/events/natstest"
	"github.com/mercato-dev/mercato/internal/platform/server"
)

func TestInventoryKeepsTheContract(t *testing.T) {
	orderstest.RunInventoryContract(t, func(t *testing.T) orderstest.InventoryUnderTest {
		issuer := authtest.New(t)
		svc, err := inventory.New(t.Context(), inventory.Config{
			Server: serverConfig(),
			DB:     db.Config{URL: dbtest.SQLiteURL(t)},
			Keys:   auth.KeysConfig{Source: issuer.KeySource()},
			// The contract waits for a hold to expire; the sweep gives its
			// stock back this often.
			ExpirySweepInterval: inventory.MinExpirySweepInterval,
		}, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		run(t, svc.Run)
		conn := dial(t, svc.GRPCAddr(), issuer)
		client := inventoryv1.NewInventoryServiceClient(conn)
		admin := auth.OutgoingToken(context.WithoutCancel(t.Context()), issuer.Token("admin-1", auth.RoleAdmin))
		return orderstest.InventoryUnderTest{
			Inventory: adapters.NewInventoryGRPCClient(client),
			SetOnHand: func(t *testing.T, sku string, n int) {
				t.Helper()
				_, err := client.SetStock(admin, &inventoryv1.SetStockRequest{Sku: sku, OnHand: int32(n)})
				require.NoError(t, err)
			},
		}
	})
}

func TestPaymentsKeepsTheContract(t *testing.T) {
	orderstest.RunPaymentsContract(t, func(t *testing.T) orderstest.PaymentsUnderTest {
		issuer := authtest.New(t)
		svc, err := payments.New(t.Context(), payments.Config{
			Server:       serverConfig(),
			DB:           db.Config{URL: dbtest.SQLiteURL(t)},
			Events:       events.Config{URL: natstest.Start(t)},
			Keys:         auth.KeysConfig{Source: issuer.KeySource()},
			ProviderSeed: 1,
		}, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		run(t, svc.Run)
		conn := dial(t, svc.GRPCAddr(), issuer)
		return orderstest.PaymentsUnderTest{
			Payments: adapters.NewPaymentsGRPCClient(paymentsv1.NewPaymentsServiceClient(conn)),
			// The card provider down for one call: the operation is begun
			// and stays in progress, as when its answer is lost.
			Interrupt: func(t *testing.T, method string, call func() error) error {
				svc.Provider().SetDown(true)
				defer svc.Provider().SetDown(false)
				return call()
			},
		}
	})
}

func serverConfig() server.Config {
	return server.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second}
}

// run runs a service until the test ends.
func run(t *testing.T, serve func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(15 * time.Second):
			t.Error("service did not stop")
		}
	})
}

// dial connects as the orders service does: every call carries a service
// token, fetched (here: issued) and renewed by a token source.
func dial(t *testing.T, addr string, issuer *authtest.Issuer) *grpc.ClientConn {
	t.Helper()
	tokens := auth.NewTokenSource(func(context.Context) (string, time.Duration, error) {
		return issuer.Token("orders", auth.RoleService), time.Hour, nil
	})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(tokens.UnaryClientInterceptor()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

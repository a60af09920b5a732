package inventory_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	inventoryv1 "github.com/mercato-dev/mercato/internal/gen/inventory/v1"
	"github.com/mercato-dev/mercato/internal/inventory"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/auth/authtest"
	"github.com/mercato-dev/mercato/internal/platform/config"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
	"github.com/mercato-dev/mercato/internal/platform/server"
)

func testConfig(url string) inventory.Config {
	return inventory.Config{
		Server:              server.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second},
		DB:                  db.Config{URL: url},
		ExpirySweepInterval: 100 * time.Millisecond,
	}
}

// start runs the service until the test ends and returns a client to it.
func start(t *testing.T, cfg inventory.Config) (*inventory.Service, inventoryv1.InventoryServiceClient) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	svc, err := inventory.New(ctx, cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(15 * time.Second):
			t.Error("service did not stop")
		}
	})
	conn, err := grpc.NewClient(svc.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return svc, inventoryv1.NewInventoryServiceClient(conn)
}

func as(t *testing.T, token string) context.Context {
	return auth.OutgoingToken(t.Context(), token)
}

// requireStatus checks the gRPC code, message and the apperr kind carried
// as ErrorInfo, which is what the gateway turns into an HTTP status.
func requireStatus(t *testing.T, err error, code codes.Code, reason, msg string) {
	t.Helper()
	st, ok := status.FromError(err)
	require.True(t, ok, "not a gRPC status: %v", err)
	require.Equal(t, code, st.Code(), st.Message())
	if msg != "" {
		require.Equal(t, msg, st.Message())
	}
	if reason != "" {
		var info *errdetails.ErrorInfo
		for _, d := range st.Details() {
			if i, ok := d.(*errdetails.ErrorInfo); ok {
				info = i
			}
		}
		require.NotNil(t, info, "no ErrorInfo on %v", err)
		require.Equal(t, reason, info.GetReason())
	}
}

// TestService runs the real service on both engines, with identity's keys
// served as JWKS, and drives a checkout's worth of calls over real gRPC.
func TestService(t *testing.T) {
	issuer := authtest.New(t)
	jwks := httptest.NewServer(issuer.JWKSHandler())
	t.Cleanup(jwks.Close)

	for _, engine := range dbtest.Engines(t) {
		t.Run(engine.Name, func(t *testing.T) {
			cfg := testConfig(engine.URL)
			cfg.Keys = auth.KeysConfig{JWKSURL: jwks.URL + "/.well-known/jwks.json"}
			svc, client := start(t, cfg)
			admin := as(t, issuer.Token("admin-1", auth.RoleAdmin))
			orders := as(t, issuer.Token("orders", auth.RoleService))

			st, err := client.SetStock(admin, &inventoryv1.SetStockRequest{Sku: "kettle-1", OnHand: 3})
			require.NoError(t, err)
			require.Equal(t, "KETTLE-1", st.GetSku())
			require.EqualValues(t, 3, st.GetAvailable())

			before := time.Now()
			r, err := client.ReserveStock(orders, &inventoryv1.ReserveStockRequest{
				OrderId: "order-1", Lines: []*inventoryv1.ReservationLine{{Sku: "KETTLE-1", Quantity: 2}},
			})
			require.NoError(t, err)
			require.Equal(t, "reserved", r.GetStatus())
			require.WithinRange(t, r.GetExpiresAt().AsTime(),
				before.Add(inventory.DefaultReservationTTL-time.Second), time.Now().Add(inventory.DefaultReservationTTL))

			_, err = client.ReserveStock(orders, &inventoryv1.ReserveStockRequest{
				OrderId: "order-2", Lines: []*inventoryv1.ReservationLine{{Sku: "kettle-1", Quantity: 2}},
			})
			requireStatus(t, err, codes.AlreadyExists, "conflict", "insufficient stock for sku KETTLE-1")

			_, err = client.SetStock(admin, &inventoryv1.SetStockRequest{Sku: "KETTLE-1", OnHand: 1})
			requireStatus(t, err, codes.AlreadyExists, "conflict", "on_hand cannot be below reserved stock (2 reserved)")

			committed, err := client.CommitReservation(orders, &inventoryv1.CommitReservationRequest{OrderId: "order-1"})
			require.NoError(t, err)
			require.Equal(t, "committed", committed.GetStatus())
			st, err = client.GetStock(admin, &inventoryv1.GetStockRequest{Sku: "kettle-1"})
			require.NoError(t, err)
			require.Equal(t, &inventoryv1.Stock{Sku: "KETTLE-1", OnHand: 1, Reserved: 0, Available: 1, Sold: 2}, stripState(st))

			_, err = client.ReleaseReservation(orders, &inventoryv1.ReleaseReservationRequest{OrderId: "order-1"})
			requireStatus(t, err, codes.AlreadyExists, "conflict", "reservation is committed; restock the order instead")
			restocked, err := client.RestockOrder(orders, &inventoryv1.RestockOrderRequest{OrderId: "order-1"})
			require.NoError(t, err)
			require.Equal(t, "restocked", restocked.GetStatus())

			// A compensation that overtook its reservation leaves a tombstone.
			released, err := client.ReleaseReservation(orders, &inventoryv1.ReleaseReservationRequest{OrderId: "order-3"})
			require.NoError(t, err)
			require.Equal(t, "released", released.GetStatus())
			require.Nil(t, released.GetExpiresAt())
			late, err := client.ReserveStock(orders, &inventoryv1.ReserveStockRequest{
				OrderId: "order-3", Lines: []*inventoryv1.ReservationLine{{Sku: "KETTLE-1", Quantity: 1}},
			})
			require.NoError(t, err)
			require.Equal(t, "released", late.GetStatus())
			require.Empty(t, late.GetLines())

			_, err = client.GetReservation(orders, &inventoryv1.GetReservationRequest{OrderId: "nope"})
			requireStatus(t, err, codes.NotFound, "not_found", "reservation not found")
			_, err = client.ReserveStock(orders, &inventoryv1.ReserveStockRequest{
				OrderId: "order-4", Lines: []*inventoryv1.ReservationLine{{Sku: "KETTLE-1", Quantity: 1}}, TtlSeconds: 86401,
			})
			requireStatus(t, err, codes.InvalidArgument, "invalid", "ttl_seconds must be between 0 and 86400")

			// The background sweep expires a short hold and gives its stock back.
			short, err := client.ReserveStock(orders, &inventoryv1.ReserveStockRequest{
				OrderId: "order-5", Lines: []*inventoryv1.ReservationLine{{Sku: "KETTLE-1", Quantity: 3}}, TtlSeconds: 1,
			})
			require.NoError(t, err)
			require.Equal(t, "reserved", short.GetStatus())
			require.Eventually(t, func() bool {
				r, err := client.GetReservation(orders, &inventoryv1.GetReservationRequest{OrderId: "order-5"})
				return err == nil && r.GetStatus() == "expired"
			}, 10*time.Second, 50*time.Millisecond)
			st, err = client.GetStock(admin, &inventoryv1.GetStockRequest{Sku: "KETTLE-1"})
			require.NoError(t, err)
			require.Equal(t, &inventoryv1.Stock{Sku: "KETTLE-1", OnHand: 3, Reserved: 0, Available: 3, Sold: 0}, stripState(st))
			_, err = client.CommitReservation(orders, &inventoryv1.CommitReservationRequest{OrderId: "order-5"})
			requireStatus(t, err, codes.AlreadyExists, "conflict", "reservation has expired")

			metrics := httpGet(t, "http://"+svc.HTTPAddr()+"/metrics")
			require.Contains(t, metrics, `mercato_inventory_reservations_total{outcome="reserved"} 2`)
			require.Contains(t, metrics, `mercato_inventory_reservations_total{outcome="out_of_stock"} 1`)
			require.Contains(t, metrics, `mercato_inventory_reservations_total{outcome="replayed"} 1`)
			require.Contains(t, metrics, "mercato_inventory_reservations_expired_total 1")
			require.Equal(t, "ready\n", httpGet(t, "http://"+svc.HTTPAddr()+"/readyz"))
		})
	}
}

// TestServiceAuthorization checks every RPC against every kind of caller,
// over gRPC: the service refuses anonymous and customer calls itself,
// without relying on the gateway.
func TestServiceAuthorization(t *testing.T) {
	issuer := authtest.New(t)
	cfg := testConfig(dbtest.SQLiteURL(t))
	cfg.Keys = auth.KeysConfig{Source: issuer.KeySource()}
	_, client := start(t, cfg)
	admin := as(t, issuer.Token("admin-1", auth.RoleAdmin))
	_, err := client.SetStock(admin, &inventoryv1.SetStockRequest{Sku: "A", OnHand: 100})
	require.NoError(t, err)

	calls := []struct {
		name      string
		adminOnly bool
		call      func(ctx context.Context, orderID string) error
	}{
		{"GetStock", true, func(ctx context.Context, _ string) error {
			_, err := client.GetStock(ctx, &inventoryv1.GetStockRequest{Sku: "A"})
			return err
		}},
		{"SetStock", true, func(ctx context.Context, _ string) error {
			_, err := client.SetStock(ctx, &inventoryv1.SetStockRequest{Sku: "A", OnHand: 100})
			return err
		}},
		{"ReserveStock", false, func(ctx context.Context, id string) error {
			_, err := client.ReserveStock(ctx, &inventoryv1.ReserveStockRequest{
				OrderId: id, Lines: []*inventoryv1.ReservationLine{{Sku: "A", Quantity: 1}},
			})
			return err
		}},
		{"GetReservation", false, func(ctx context.Context, id string) error {
			_, err := client.GetReservation(ctx, &inventoryv1.GetReservationRequest{OrderId: id})
			return err
		}},
		{"CommitReservation", false, func(ctx context.Context, id string) error {
			_, err := client.CommitReservation(ctx, &inventoryv1.CommitReservationRequest{OrderId: id})
			return err
		}},
		{"RestockOrder", false, func(ctx context.Context, id string) error {
			_, err := client.RestockOrder(ctx, &inventoryv1.RestockOrderRequest{OrderId: id})
			return err
		}},
		{"ReleaseReservation", false, func(ctx context.Context, id string) error {
			_, err := client.ReleaseReservation(ctx, &inventoryv1.ReleaseReservationRequest{OrderId: id})
			return err
		}},
	}
	expired := issuer.Sign(auth.Claims{Role: auth.RoleService})
	callers := []struct {
		name string
		ctx  context.Context
		// allowed reports whether the caller may make the call; refused
		// is the code when it may not.
		allowed func(adminOnly bool) bool
		refused codes.Code
	}{
		{"anonymous", t.Context(), func(bool) bool { return false }, codes.Unauthenticated},
		{"invalid token", as(t, expired), func(bool) bool { return false }, codes.Unauthenticated},
		{"customer", as(t, issuer.Token("user-1", auth.RoleCustomer)), func(bool) bool { return false }, codes.PermissionDenied},
		{"service", as(t, issuer.Token("orders", auth.RoleService)), func(adminOnly bool) bool { return !adminOnly }, codes.PermissionDenied},
		{"admin", admin, func(bool) bool { return true }, codes.OK},
	}
	for _, caller := range callers {
		t.Run(caller.name, func(t *testing.T) {
			orderID := "order-" + strings.ReplaceAll(caller.name, " ", "-")
			// In this order every allowed call succeeds: reserve, get,
			// commit, restock, then release (refused once committed, so it
			// runs on a fresh order).
			for _, c := range calls {
				id := orderID
				if c.name == "ReleaseReservation" {
					id += "-released"
				}
				err := c.call(caller.ctx, id)
				if caller.allowed(c.adminOnly) {
					require.NoError(t, err, "%s may call %s", caller.name, c.name)
					continue
				}
				require.Equal(t, caller.refused, status.Code(err), "%s calling %s: %v", caller.name, c.name, err)
			}
		})
	}

	st, err := client.GetStock(admin, &inventoryv1.GetStockRequest{Sku: "A"})
	require.NoError(t, err)
	require.Equal(t, &inventoryv1.Stock{Sku: "A", OnHand: 100, Available: 100}, stripState(st),
		"refused calls changed nothing and allowed ones were restocked")
}

func TestConfigValidate(t *testing.T) {
	issuer := authtest.New(t)
	valid := testConfig(dbtest.SQLiteURL(t))
	valid.Keys = auth.KeysConfig{Source: issuer.KeySource()}
	require.NoError(t, valid.Validate())
	require.NoError(t, inventory.Config{
		Server: valid.Server, DB: valid.DB, Keys: auth.KeysConfig{JWKSURL: "http://identity:8081/.well-known/jwks.json"},
	}.Validate(), "zero TTL and sweep interval pick the defaults")

	bad := inventory.Config{
		Server:              server.Config{GRPCAddr: "nowhere"},
		Keys:                auth.KeysConfig{JWKSURL: "identity/jwks"},
		ReservationTTL:      25 * time.Hour,
		ExpirySweepInterval: time.Millisecond,
	}
	err := bad.Validate()
	require.Error(t, err)
	for _, want := range []string{
		"HTTP listen address is empty", `listen address "nowhere" is not host:port`,
		"database URL is empty", "is not an absolute http(s) URL",
		"reservation TTL must be between 1s and 24h0m0s", "expiry sweep interval must be between 100ms and 1h0m0s",
	} {
		require.ErrorContains(t, err, want)
	}
	_, err = inventory.New(t.Context(), bad, slog.New(slog.DiscardHandler))
	require.Error(t, err, "a misconfigured service does not start")
	require.ErrorAs(t, err, new(*config.Error))
	require.ErrorContains(t, err, "inventory configuration: ")
}

func TestMigrateIsIdempotent(t *testing.T) {
	for _, engine := range dbtest.Engines(t) {
		t.Run(engine.Name, func(t *testing.T) {
			cfg := db.Config{URL: engine.URL}
			require.NoError(t, inventory.Migrate(t.Context(), cfg))
			require.NoError(t, inventory.Migrate(t.Context(), cfg))
		})
	}
}

// stripState returns a copy of st without protobuf internals, for Equal.
func stripState(st *inventoryv1.Stock) *inventoryv1.Stock {
	return &inventoryv1.Stock{
		Sku: st.GetSku(), OnHand: st.GetOnHand(), Reserved: st.GetReserved(),
		Available: st.GetAvailable(), Sold: st.GetSold(),
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "GET %s: %s", url, body)
	return string(body)
}

package cart_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/mercato-dev/mercato/internal/cart"
	cartv1 "github.com/mercato-dev/mercato/internal/gen/cart/v1"
	catalogv1 "github.com/mercato-dev/mercato/internal/gen/catalog/v1"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/auth/authtest"
	"github.com/mercato-dev/mercato/internal/platform/config"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
	"github.com/mercato-dev/mercato/internal/platform/events"
	"github.com/mercato-dev/mercato/internal/platform/events/natstest"
	"github.com/mercato-dev/mercato/internal/platform/server"
)

// consumedStreams are the streams of other services the cart reads: the
// orders service declares ORDERS, and in a test without it the cart must
// be told of the stream to find it.
var consumedStreams = []events.Stream{{Name: "ORDERS", Domain: "order", Description: "orders events"}}

const redisTestURL = "redis://127.0.0.1:6379/0"

// fakeCatalog is a catalog gRPC server that knows some products and
// remembers the authorization each GetProduct carried.
type fakeCatalog struct {
	catalogv1.UnimplementedCatalogServiceServer
	srv  *grpc.Server
	addr string

	mu       sync.Mutex
	products map[string]bool
	tokens   []string
}

func startFakeCatalog(t *testing.T, products ...string) *fakeCatalog {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	c := &fakeCatalog{srv: grpc.NewServer(), addr: lis.Addr().String(), products: map[string]bool{}}
	for _, p := range products {
		c.products[p] = true
	}
	catalogv1.RegisterCatalogServiceServer(c.srv, c)
	go func() { _ = c.srv.Serve(lis) }()
	t.Cleanup(c.srv.Stop)
	return c
}

func (c *fakeCatalog) GetProduct(ctx context.Context, req *catalogv1.GetProductRequest) (*catalogv1.Product, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tokens = append(c.tokens, md.Get("authorization")...)
	if !c.products[req.GetId()] {
		return nil, status.Error(codes.NotFound, "product not found")
	}
	return &catalogv1.Product{Id: req.GetId(), Name: "Kettle", PriceCents: 1250, Currency: "USD"}, nil
}

func (c *fakeCatalog) seenTokens() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.tokens...)
}

type variant struct {
	name     string
	dbURL    string
	redisURL string
}

// TestService runs the real service on loopback ports — on SQLite,
// PostgreSQL, and Redis — against a fake catalog over real gRPC, an
// embedded NATS, and identity's keys served as JWKS.
func TestService(t *testing.T) {
	natsURL := natstest.Start(t)
	issuer := authtest.New(t)
	jwks := httptest.NewServer(issuer.JWKSHandler())
	t.Cleanup(jwks.Close)

	engines := dbtest.Engines(t)
	variants := []variant{
		{name: engines[0].Name, dbURL: engines[0].URL},
		{name: engines[1].Name, dbURL: engines[1].URL},
		{name: "redis", dbURL: dbtest.SQLiteURL(t), redisURL: redisTestURL},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			kettle, mug := uuid.NewString(), uuid.NewString()
			catalog := startFakeCatalog(t, kettle, mug)
			svc := start(t, cart.Config{
				Server:      server.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second},
				DB:          db.Config{URL: v.dbURL},
				RedisURL:    v.redisURL,
				Events:      events.Config{URL: natsURL, Streams: consumedStreams},
				Keys:        auth.KeysConfig{JWKSURL: jwks.URL + "/.well-known/jwks.json"},
				CatalogAddr: catalog.addr,
			})
			conn, err := grpc.NewClient(svc.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			require.NoError(t, err)
			t.Cleanup(func() { _ = conn.Close() })
			client := cartv1.NewCartServiceClient(conn)

			ada, bob := uuid.NewString(), uuid.NewString()
			if v.redisURL != "" {
				cleanRedisCarts(t, ada, bob)
			}
			adaToken := issuer.Token(ada, auth.RoleCustomer)
			asAda := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+adaToken)
			asBob := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+issuer.Token(bob, auth.RoleCustomer))

			health, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
			require.NoError(t, err)
			require.Equal(t, healthpb.HealthCheckResponse_SERVING, health.GetStatus())

			_, err = client.GetCart(t.Context(), &cartv1.GetCartRequest{})
			require.Equal(t, codes.Unauthenticated, status.Code(err), "an anonymous call is refused by the service itself")

			_, err = client.SetItem(asAda, &cartv1.SetItemRequest{ProductId: uuid.NewString(), Quantity: 1})
			requireStatus(t, err, codes.NotFound, "product not found")
			_, err = client.SetItem(asAda, &cartv1.SetItemRequest{ProductId: kettle, Quantity: 100})
			requireStatus(t, err, codes.InvalidArgument, "quantity must be between 0 and 99 (0 removes the item)")

			got, err := client.SetItem(asAda, &cartv1.SetItemRequest{ProductId: kettle, Quantity: 2})
			require.NoError(t, err)
			requireItems(t, got, kettle, 2)
			require.Equal(t, []string{"Bearer " + adaToken, "Bearer " + adaToken}, catalog.seenTokens(),
				"both product checks carried the caller's token")
			_, err = client.SetItem(asAda, &cartv1.SetItemRequest{ProductId: mug, Quantity: 1})
			require.NoError(t, err)
			got, err = client.GetCart(asAda, &cartv1.GetCartRequest{})
			require.NoError(t, err)
			requireItems(t, got, kettle, 2, mug, 1)

			bobs, err := client.GetCart(asBob, &cartv1.GetCartRequest{})
			require.NoError(t, err)
			require.Empty(t, bobs.GetItems(), "Ada's cart is not Bob's")

			// Ada's order of two kettles is confirmed: they leave her cart.
			publishOrderConfirmed(t, natsURL, ada, kettle, 2)
			require.Eventually(t, func() bool {
				got, err := client.GetCart(asAda, &cartv1.GetCartRequest{})
				return err == nil && len(got.GetItems()) == 1
			}, 15*time.Second, 20*time.Millisecond)
			got, err = client.GetCart(asAda, &cartv1.GetCartRequest{})
			require.NoError(t, err)
			requireItems(t, got, mug, 1)

			// Without the catalog, nothing can be added, but a line can go.
			catalog.srv.Stop()
			_, err = client.SetItem(asAda, &cartv1.SetItemRequest{ProductId: kettle, Quantity: 1})
			require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
			got, err = client.SetItem(asAda, &cartv1.SetItemRequest{ProductId: mug, Quantity: 0})
			require.NoError(t, err)
			require.Empty(t, got.GetItems())

			_, err = client.ClearCart(asAda, &cartv1.ClearCartRequest{})
			require.NoError(t, err)
		})
	}
}

func requireStatus(t *testing.T, err error, code codes.Code, message string) {
	t.Helper()
	st, ok := status.FromError(err)
	require.True(t, ok, "not a gRPC status: %v", err)
	require.Equal(t, code, st.Code(), st.Message())
	require.Equal(t, message, st.Message())
}

// requireItems checks the cart's lines, in order, given as id, quantity pairs.
func requireItems(t *testing.T, c *cartv1.Cart, want ...any) {
	t.Helper()
	var got []any
	for _, it := range c.GetItems() {
		got = append(got, it.GetProductId(), int(it.GetQuantity()))
	}
	require.Equal(t, want, got)
}

func publishOrderConfirmed(t *testing.T, natsURL, userID, productID string, quantity int) {
	t.Helper()
	_, js := natstest.Connect(t, natsURL)
	payload, err := json.Marshal(map[string]any{
		"order_id": uuid.NewString(), "user_id": userID, "email": "ada@example.test",
		"items":       []map[string]any{{"product_id": productID, "sku": "KETTLE-1", "name": "Kettle", "quantity": quantity, "unit_price_cents": 1250}},
		"total_cents": 1250 * quantity, "currency": "USD", "from_cart": true,
	})
	require.NoError(t, err)
	msg := nats.NewMsg("order.confirmed")
	msg.Data = payload
	msg.Header.Set(events.HeaderEventID, uuid.NewString())
	_, err = js.PublishMsg(t.Context(), msg)
	require.NoError(t, err)
}

func cleanRedisCarts(t *testing.T, users ...string) {
	t.Cleanup(func() {
		opts, err := redis.ParseURL(redisTestURL)
		if err != nil {
			t.Logf("redis URL: %v", err)
			return
		}
		client := redis.NewClient(opts)
		defer client.Close()
		ctx := context.Background()
		for _, u := range users {
			keys, err := client.Keys(ctx, "cart:{"+u+"}*").Result()
			if err == nil && len(keys) > 0 {
				err = client.Del(ctx, keys...).Err()
			}
			if err != nil {
				t.Logf("delete test carts: %v", err)
			}
		}
	})
}

// start runs the service until the test ends and waits until it is ready.
func start(t *testing.T, cfg cart.Config) *cart.Service {
	t.Helper()
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	svc, err := cart.New(ctx, cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(20 * time.Second):
			t.Error("service did not stop")
		}
	})
	require.Eventually(t, func() bool {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+svc.HTTPAddr()+"/readyz", nil)
		if err != nil {
			return false
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond)
	return svc
}

func TestConfigValidate(t *testing.T) {
	valid := cart.Config{
		Server:      server.Config{GRPCAddr: ":9090", HTTPAddr: ":8081"},
		DB:          db.Config{URL: "data/cart.db"},
		Events:      events.Config{URL: "nats://nats:4222", Streams: consumedStreams},
		Keys:        auth.KeysConfig{JWKSURL: "http://identity:8081/.well-known/jwks.json"},
		CatalogAddr: "catalog:9090",
	}
	require.NoError(t, valid.Validate())
	withRedis := valid
	withRedis.RedisURL = "redis://:secret@redis:6379/2"
	require.NoError(t, withRedis.Validate())
	withKeys := valid
	withKeys.Keys = auth.KeysConfig{Source: authtest.New(t).KeySource()}
	require.NoError(t, withKeys.Validate(), "injected keys replace the JWKS URL")

	bad := cart.Config{
		Keys:     auth.KeysConfig{JWKSURL: "identity:8081/jwks"},
		RedisURL: "http://user:hunter2@redis:6379",
		Events:   events.Config{StreamReplicas: 9},
	}
	err := bad.Validate()
	require.Error(t, err)
	for _, want := range []string{"gRPC listen address", "database URL", "NATS URL", "JWKS URL", "Redis URL", "catalog address", "stream replicas"} {
		require.Contains(t, err.Error(), want)
	}
	require.NotContains(t, err.Error(), "hunter2", "a password in a URL is not echoed")

	_, err = cart.New(t.Context(), bad, slog.New(slog.DiscardHandler))
	require.Error(t, err, "New refuses to start half-configured")
	require.ErrorAs(t, err, new(*config.Error))
	require.ErrorContains(t, err, "cart configuration: ")
	require.False(t, errors.Is(err, context.Canceled))
}

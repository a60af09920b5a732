package catalog_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/mercato-dev/mercato/internal/catalog"
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

// TestService runs the real service (both engines) on loopback ports with an
// embedded NATS and identity's keys served as JWKS, and talks to it over
// real gRPC.
func TestService(t *testing.T) {
	natsURL := natstest.Start(t)
	issuer := authtest.New(t)
	jwks := httptest.NewServer(issuer.JWKSHandler())
	t.Cleanup(jwks.Close)

	for _, engine := range dbtest.Engines(t) {
		t.Run(engine.Name, func(t *testing.T) {
			svc := start(t, catalog.Config{
				Server: server.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second},
				DB:     db.Config{URL: engine.URL},
				Events: events.Config{URL: natsURL},
				Keys:   auth.KeysConfig{JWKSURL: jwks.URL + "/.well-known/jwks.json"},
			})
			conn, err := grpc.NewClient(svc.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			require.NoError(t, err)
			t.Cleanup(func() { _ = conn.Close() })
			client := catalogv1.NewCatalogServiceClient(conn)
			admin := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+issuer.Token("admin-1", auth.RoleAdmin))

			health, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
			require.NoError(t, err)
			require.Equal(t, healthpb.HealthCheckResponse_SERVING, health.GetStatus())

			_, err = client.CreateProduct(t.Context(), &catalogv1.CreateProductRequest{Sku: "x", Name: "x", PriceCents: 1, Currency: "EUR"})
			require.Equal(t, codes.Unauthenticated, status.Code(err), "an anonymous write is refused by the service itself")

			sku := "COMP-" + strings.ToUpper(engine.Name)
			created, err := client.CreateProduct(admin, &catalogv1.CreateProductRequest{
				Sku: sku, Name: "Component kettle", Description: "Made in a test.",
				PriceCents: 4599, Currency: "EUR", Categories: []string{"kitchen"},
			})
			require.NoError(t, err)

			var header metadata.MD
			got, err := client.GetProduct(t.Context(), &catalogv1.GetProductRequest{Id: created.GetId()}, grpc.Header(&header))
			require.NoError(t, err)
			require.Equal(t, sku, got.GetSku())
			require.Equal(t, []string{`"v1"`}, header.Get("etag"))

			page, err := client.ListProducts(t.Context(), &catalogv1.ListProductsRequest{Category: "kitchen", Q: "kettle"})
			require.NoError(t, err)
			require.Len(t, page.GetProducts(), 1)
			require.Equal(t, created.GetId(), page.GetProducts()[0].GetId())

			requireCreatedEvent(t, natsURL, created.GetId())
		})
	}
}

// requireCreatedEvent waits for the relay to publish product.created for id.
func requireCreatedEvent(t *testing.T, natsURL, id string) {
	t.Helper()
	_, js := natstest.Connect(t, natsURL)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	consumer, err := js.OrderedConsumer(ctx, catalog.Streams[0].Name, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"product.created"},
	})
	require.NoError(t, err)
	for {
		msg, err := consumer.Next(jetstream.FetchContext(ctx))
		require.NoError(t, err, "product.created for %s never reached JetStream", id)
		var payload struct {
			ID      string `json:"id"`
			Version int    `json:"version"`
		}
		require.NoError(t, json.Unmarshal(msg.Data(), &payload))
		if payload.ID == id {
			require.Equal(t, 1, payload.Version)
			require.NotEmpty(t, msg.Headers().Get(events.HeaderEventID))
			return
		}
	}
}

// start runs the service until the test ends and waits until it is ready.
func start(t *testing.T, cfg catalog.Config) *catalog.Service {
	t.Helper()
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	svc, err := catalog.New(ctx, cfg, slog.New(slog.DiscardHandler))
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
	valid := catalog.Config{
		Server: server.Config{GRPCAddr: ":9090", HTTPAddr: ":8081"},
		DB:     db.Config{URL: "data/catalog.db"},
		Events: events.Config{URL: "nats://nats:4222"},
		Keys:   auth.KeysConfig{JWKSURL: "http://identity:8081/.well-known/jwks.json"},
	}
	require.NoError(t, valid.Validate())

	withKeys := valid
	withKeys.Keys = auth.KeysConfig{Source: authtest.New(t).KeySource()}
	require.NoError(t, withKeys.Validate(), "injected keys replace the JWKS URL")

	bad := catalog.Config{
		Keys:         auth.KeysConfig{JWKSURL: "identity:8081/jwks"},
		PageTokenKey: "short",
		Events:       events.Config{StreamReplicas: 7},
	}
	err := bad.Validate()
	require.Error(t, err)
	for _, want := range []string{"gRPC listen address", "database URL", "NATS URL", "JWKS URL", "page token key", "stream replicas"} {
		require.Contains(t, err.Error(), want)
	}

	withCache := valid
	withCache.Cache = catalog.CacheConfig{RedisURL: "redis://cache:6379/0"}
	require.NoError(t, withCache.Validate())
	withCache.Cache = catalog.CacheConfig{RedisURL: "http://cache", TTL: time.Millisecond, Timeout: time.Minute}
	err = withCache.Validate()
	for _, want := range []string{"Redis URL", "cache TTL 1ms", "cache timeout 1m0s"} {
		require.ErrorContains(t, err, want)
	}

	_, err = catalog.New(t.Context(), bad, slog.New(slog.DiscardHandler))
	require.Error(t, err, "New refuses to start half-configured")
	require.ErrorAs(t, err, new(*config.Error))
	require.ErrorContains(t, err, "catalog configuration: ")
	require.False(t, errors.Is(err, context.Canceled))
}

package notifications_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	notificationsv1 "github.com/mercato-dev/mercato/internal/gen/notifications/v1"
	"github.com/mercato-dev/mercato/internal/notifications"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/auth/authtest"
	"github.com/mercato-dev/mercato/internal/platform/config"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
	"github.com/mercato-dev/mercato/internal/platform/events"
	"github.com/mercato-dev/mercato/internal/platform/events/natstest"
	"github.com/mercato-dev/mercato/internal/platform/server"
)

// consumedStreams are the streams of other services notifications reads:
// identity declares USERS and orders ORDERS, and in a test without them
// notifications must be told of the streams to find them.
var consumedStreams = []events.Stream{
	{Name: "USERS", Domain: "user", Description: "identity events"},
	{Name: "ORDERS", Domain: "order", Description: "orders events"},
}

// TestService runs the real service (both engines) on loopback ports with
// an embedded NATS and identity's keys served as JWKS, publishes events to
// JetStream as identity and orders would, and reads the notifications back
// over real gRPC.
func TestService(t *testing.T) {
	natsURL := natstest.Start(t)
	issuer := authtest.New(t)
	jwks := httptest.NewServer(issuer.JWKSHandler())
	t.Cleanup(jwks.Close)

	for _, engine := range dbtest.Engines(t) {
		t.Run(engine.Name, func(t *testing.T) {
			sinkFile := filepath.Join(t.TempDir(), "outbox", "notifications.jsonl")
			svc := start(t, notifications.Config{
				Server:       server.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second},
				DB:           db.Config{URL: engine.URL},
				Events:       events.Config{URL: natsURL, Streams: consumedStreams},
				Keys:         auth.KeysConfig{JWKSURL: jwks.URL + "/.well-known/jwks.json"},
				SinkFile:     sinkFile,
				PageTokenKey: "component-test-page-token-key",
			})
			conn, err := grpc.NewClient(svc.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			require.NoError(t, err)
			t.Cleanup(func() { _ = conn.Close() })
			client := notificationsv1.NewNotificationsServiceClient(conn)

			health, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
			require.NoError(t, err)
			require.Equal(t, healthpb.HealthCheckResponse_SERVING, health.GetStatus())

			_, err = client.ListNotifications(t.Context(), &notificationsv1.ListNotificationsRequest{})
			require.Equal(t, codes.Unauthenticated, status.Code(err), "an anonymous call is refused by the service itself")

			ada, orderID := uuid.NewString(), uuid.NewString()
			asAda := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+issuer.Token(ada, auth.RoleCustomer))
			asBob := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+issuer.Token(uuid.NewString(), auth.RoleCustomer))

			_, js := natstest.Connect(t, natsURL)
			publish(t, js, "user.registered", map[string]any{
				"user_id": ada, "email": "ada@example.com", "name": "Ada", "registered_at": time.Now().UTC(),
			})
			publish(t, js, "order.confirmed", map[string]any{
				"order_id": orderID, "user_id": ada, "total_cents": 2500, "currency": "USD",
				"items": []map[string]any{{"product_id": uuid.NewString(), "sku": "KETTLE-1", "name": "Kettle",
					"quantity": 2, "unit_price_cents": 1250, "line_total_cents": 2500}},
			})

			var got *notificationsv1.ListNotificationsResponse
			require.Eventually(t, func() bool {
				got, err = client.ListNotifications(asAda, &notificationsv1.ListNotificationsRequest{})
				return err == nil && len(got.GetNotifications()) == 2
			}, 15*time.Second, 20*time.Millisecond)
			subjects := []string{got.GetNotifications()[0].GetSubject(), got.GetNotifications()[1].GetSubject()}
			require.ElementsMatch(t, []string{"Welcome to mercato, Ada", "Your order " + orderID + " is confirmed"}, subjects)
			for _, n := range got.GetNotifications() {
				require.Equal(t, ada, n.GetUserId())
				require.Equal(t, "email", n.GetChannel())
				require.NotEmpty(t, n.GetId())
				require.NotNil(t, n.GetCreatedAt())
				if n.GetKind() == "order.confirmed" {
					require.Contains(t, n.GetBody(), "2 × Kettle  $25.00")
					require.Contains(t, n.GetBody(), "Total: $25.00")
				}
			}

			page, err := client.ListNotifications(asAda, &notificationsv1.ListNotificationsRequest{PageSize: 1})
			require.NoError(t, err)
			require.Len(t, page.GetNotifications(), 1)
			rest, err := client.ListNotifications(asAda, &notificationsv1.ListNotificationsRequest{PageSize: 1, PageToken: page.GetNextPageToken()})
			require.NoError(t, err)
			require.Len(t, rest.GetNotifications(), 1)
			require.NotEqual(t, page.GetNotifications()[0].GetId(), rest.GetNotifications()[0].GetId())

			_, err = client.ListNotifications(asAda, &notificationsv1.ListNotificationsRequest{PageSize: 101})
			require.Equal(t, codes.InvalidArgument, status.Code(err))
			_, err = client.ListNotifications(asBob, &notificationsv1.ListNotificationsRequest{PageToken: page.GetNextPageToken()})
			require.Equal(t, codes.InvalidArgument, status.Code(err), "Ada's page token is not Bob's")
			bobs, err := client.ListNotifications(asBob, &notificationsv1.ListNotificationsRequest{})
			require.NoError(t, err)
			require.Empty(t, bobs.GetNotifications(), "Ada's notifications are not Bob's")

			require.Equal(t, 2, countLines(t, sinkFile), "each notification delivered once to the file")
		})
	}
}

func publish(t *testing.T, js jetstream.JetStream, subject string, payload any) {
	t.Helper()
	raw, err := json.Marshal(payload)
	require.NoError(t, err)
	msg := nats.NewMsg(subject)
	msg.Data = raw
	msg.Header.Set(events.HeaderEventID, uuid.NewString())
	_, err = js.PublishMsg(t.Context(), msg)
	require.NoError(t, err)
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
	}
	require.NoError(t, sc.Err())
	return n
}

// start runs the service until the test ends and waits until it is ready.
func start(t *testing.T, cfg notifications.Config) *notifications.Service {
	t.Helper()
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	svc, err := notifications.New(ctx, cfg, slog.New(slog.DiscardHandler))
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
	valid := notifications.Config{
		Server: server.Config{GRPCAddr: ":9090", HTTPAddr: ":8081"},
		DB:     db.Config{URL: "data/notifications.db"},
		Events: events.Config{URL: "nats://nats:4222", Streams: consumedStreams},
		Keys:   auth.KeysConfig{JWKSURL: "http://identity:8081/.well-known/jwks.json"},
	}
	require.NoError(t, valid.Validate())
	withKeys := valid
	withKeys.Keys = auth.KeysConfig{Source: authtest.New(t).KeySource()}
	withKeys.SinkFile = "data/notifications.jsonl"
	require.NoError(t, withKeys.Validate(), "injected keys replace the JWKS URL")

	bad := notifications.Config{
		Keys:         auth.KeysConfig{JWKSURL: "identity:8081/jwks"},
		PageTokenKey: "short",
		Events:       events.Config{StreamReplicas: -1},
	}
	err := bad.Validate()
	require.Error(t, err)
	for _, want := range []string{"gRPC listen address", "database URL", "NATS URL", "JWKS URL", "page token key", "stream replicas"} {
		require.Contains(t, err.Error(), want)
	}
	_, err = notifications.New(t.Context(), bad, slog.New(slog.DiscardHandler))
	require.Error(t, err, "New refuses to start half-configured")
	require.ErrorAs(t, err, new(*config.Error))
	require.ErrorContains(t, err, "notifications configuration: ")
	require.False(t, errors.Is(err, context.Canceled))
}

package identity_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	identityv1 "github.com/mercato-dev/mercato/internal/gen/identity/v1"
	"github.com/mercato-dev/mercato/internal/identity"
	"github.com/mercato-dev/mercato/internal/identity/domain"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/config"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
	"github.com/mercato-dev/mercato/internal/platform/events"
	"github.com/mercato-dev/mercato/internal/platform/events/natstest"
	"github.com/mercato-dev/mercato/internal/platform/server"
)

const (
	adminEmail    = "admin@example.com"
	adminPassword = "admin password 123"
)

// startService runs the real service on loopback ports against an embedded
// NATS server and returns it with a connected client. The service is
// stopped, and must stop cleanly, when the test ends.
func startService(t *testing.T, natsURL string) (*identity.Service, identityv1.IdentityServiceClient) {
	t.Helper()
	cfg := identity.Config{
		Server:               server.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second},
		DB:                   db.Config{URL: dbtest.SQLiteURL(t)},
		Events:               events.Config{URL: natsURL},
		AdminEmail:           adminEmail,
		AdminPassword:        adminPassword,
		LoginRatePerMinute:   3,
		LoginIPRatePerMinute: 100,
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := identity.New(t.Context(), cfg, logger)
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err, "the service stops cleanly")
		case <-time.After(15 * time.Second):
			t.Error("the service did not stop")
		}
	})

	conn, err := grpc.NewClient(svc.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return svc, identityv1.NewIdentityServiceClient(conn)
}

func bearer(ctx context.Context, token string) context.Context {
	return auth.OutgoingToken(ctx, token)
}

// requireStatus checks err is a gRPC status with code and, for kinded
// errors, the ErrorInfo reason the gateway maps from.
func requireStatus(t *testing.T, err error, code codes.Code, reason string) {
	t.Helper()
	st, ok := status.FromError(err)
	require.True(t, ok, "not a status: %v", err)
	require.Equal(t, code, st.Code(), "message: %s", st.Message())
	if reason == "" {
		return
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			require.Equal(t, reason, info.GetReason())
			return
		}
	}
	t.Fatalf("status %v has no ErrorInfo", st)
}

func TestServiceOverGRPC(t *testing.T) {
	natsURL := natstest.Start(t)
	svc, client := startService(t, natsURL)
	ctx := t.Context()

	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + svc.HTTPAddr() + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 50*time.Millisecond, "the service becomes ready")

	// Register, and the conflict on a second try.
	user, err := client.Register(ctx, &identityv1.RegisterRequest{Email: "Ann@Example.com", Password: "correct horse", Name: "Ann"})
	require.NoError(t, err)
	require.Equal(t, "ann@example.com", user.GetEmail())
	require.Equal(t, auth.RoleCustomer, user.GetRole())
	require.NotEmpty(t, user.GetId())
	require.NotNil(t, user.GetCreatedAt())
	_, err = client.Register(ctx, &identityv1.RegisterRequest{Email: "ann@example.com", Password: "correct horse", Name: "Ann"})
	requireStatus(t, err, codes.AlreadyExists, "conflict")
	require.Equal(t, "email already registered", status.Convert(err).Message())
	_, err = client.Register(ctx, &identityv1.RegisterRequest{Email: "bob@example.com", Password: "short", Name: "Bob"})
	requireStatus(t, err, codes.InvalidArgument, "invalid")

	// Login, then who am I.
	pair, err := client.Login(ctx, &identityv1.LoginRequest{Email: "ann@example.com", Password: "correct horse"})
	require.NoError(t, err)
	require.Equal(t, "Bearer", pair.GetTokenType())
	require.EqualValues(t, 900, pair.GetExpiresIn())
	me, err := client.GetMe(bearer(ctx, pair.GetAccessToken()), &identityv1.GetMeRequest{})
	require.NoError(t, err)
	require.Equal(t, user.GetId(), me.GetId())

	// Anonymous or forged callers are refused on non-public methods.
	_, err = client.GetMe(ctx, &identityv1.GetMeRequest{})
	requireStatus(t, err, codes.Unauthenticated, "unauthenticated")
	_, err = client.GetMe(bearer(ctx, pair.GetAccessToken()+"x"), &identityv1.GetMeRequest{})
	requireStatus(t, err, codes.Unauthenticated, "unauthenticated")
	_, err = client.Logout(ctx, &identityv1.LogoutRequest{RefreshToken: pair.GetRefreshToken()})
	requireStatus(t, err, codes.Unauthenticated, "unauthenticated")

	// A client still sending a broken access token can refresh.
	refreshed, err := client.Refresh(bearer(ctx, "expired.or.broken"), &identityv1.RefreshRequest{RefreshToken: pair.GetRefreshToken()})
	require.NoError(t, err)
	_, err = client.Refresh(ctx, &identityv1.RefreshRequest{RefreshToken: pair.GetRefreshToken()})
	requireStatus(t, err, codes.Unauthenticated, "unauthenticated")
	_, err = client.Refresh(ctx, &identityv1.RefreshRequest{RefreshToken: refreshed.GetRefreshToken()})
	requireStatus(t, err, codes.Unauthenticated, "unauthenticated")

	// Logout ends a session.
	second, err := client.Login(ctx, &identityv1.LoginRequest{Email: "ann@example.com", Password: "correct horse"})
	require.NoError(t, err)
	_, err = client.Logout(bearer(ctx, second.GetAccessToken()), &identityv1.LogoutRequest{RefreshToken: second.GetRefreshToken()})
	require.NoError(t, err)
	_, err = client.Refresh(ctx, &identityv1.RefreshRequest{RefreshToken: second.GetRefreshToken()})
	requireStatus(t, err, codes.Unauthenticated, "unauthenticated")

	// Bad credentials, then the rate limit with its Retry-After.
	_, err = client.Login(ctx, &identityv1.LoginRequest{Email: "ann@example.com", Password: "wrong password"})
	requireStatus(t, err, codes.Unauthenticated, "unauthenticated")
	require.Equal(t, "invalid email or password", status.Convert(err).Message())
	var header metadata.MD
	_, err = client.Login(ctx, &identityv1.LoginRequest{Email: "ann@example.com", Password: "correct horse"}, grpc.Header(&header))
	requireStatus(t, err, codes.ResourceExhausted, "too_many_requests")
	require.Equal(t, "too many login attempts", status.Convert(err).Message())
	retry, err := strconv.Atoi(first(header.Get("retry-after")))
	require.NoError(t, err)
	require.GreaterOrEqual(t, retry, 1)
	require.LessOrEqual(t, retry, 20)

	// The bootstrap admin.
	adminPair, err := client.Login(ctx, &identityv1.LoginRequest{Email: adminEmail, Password: adminPassword})
	require.NoError(t, err)
	adminMe, err := client.GetMe(bearer(ctx, adminPair.GetAccessToken()), &identityv1.GetMeRequest{})
	require.NoError(t, err)
	require.Equal(t, auth.RoleAdmin, adminMe.GetRole())

	// The key set, over gRPC and over HTTP, verifies the tokens as the
	// gateway and the other services do.
	jwks, err := client.GetJWKS(ctx, &identityv1.GetJWKSRequest{})
	require.NoError(t, err)
	require.Len(t, jwks.GetKeys(), 1)
	key := jwks.GetKeys()[0]
	require.Equal(t, []string{"OKP", "Ed25519", "EdDSA", "sig"}, []string{key.GetKty(), key.GetCrv(), key.GetAlg(), key.GetUse()})

	jwksURL := "http://" + svc.HTTPAddr() + "/.well-known/jwks.json"
	resp, err := http.Get(jwksURL)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "public, max-age=60", resp.Header.Get("Cache-Control"))
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	var doc struct {
		Keys []domain.JWK `json:"keys"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&doc))
	require.Equal(t, []domain.JWK{{Kty: key.GetKty(), Crv: key.GetCrv(), X: key.GetX(), Kid: key.GetKid(), Alg: key.GetAlg(), Use: key.GetUse()}}, doc.Keys)

	verifier := auth.NewVerifier(auth.NewJWKSCache(jwksURL, nil), auth.DefaultIssuer, auth.DefaultAudience)
	p, err := verifier.Verify(ctx, adminPair.GetAccessToken())
	require.NoError(t, err)
	require.Equal(t, auth.Principal{UserID: adminMe.GetId(), Email: adminEmail, Role: auth.RoleAdmin, Token: adminPair.GetAccessToken()}, p)

	// user.registered reached JetStream (through the outbox relay).
	_, js := natstest.Connect(t, natsURL)
	var msg *jetstream.RawStreamMsg
	require.Eventually(t, func() bool {
		stream, err := js.Stream(ctx, identity.Streams[0].Name)
		if err != nil {
			return false
		}
		msg, err = stream.GetLastMsgForSubject(ctx, domain.SubjectUserRegistered)
		return err == nil
	}, 10*time.Second, 50*time.Millisecond)
	var ev domain.UserRegistered
	require.NoError(t, json.Unmarshal(msg.Data, &ev))
	require.Equal(t, user.GetId(), ev.UserID)
	require.Equal(t, "ann@example.com", ev.Email)
	require.Equal(t, "Ann", ev.Name)
	require.Equal(t, user.GetCreatedAt().AsTime(), ev.RegisteredAt)
	require.NotEmpty(t, msg.Header.Get(events.HeaderEventID))
}

func TestServiceRestartKeepsKeysAndAccounts(t *testing.T) {
	natsURL := natstest.Start(t)
	dbURL := dbtest.SQLiteURL(t)
	cfg := identity.Config{
		Server: server.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second},
		DB:     db.Config{URL: dbURL},
		Events: events.Config{URL: natsURL},
	}
	logger := slog.New(slog.DiscardHandler)
	run := func() (identityv1.IdentityServiceClient, func()) {
		svc, err := identity.New(t.Context(), cfg, logger)
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- svc.Run(ctx) }()
		conn, err := grpc.NewClient(svc.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		require.NoError(t, err)
		return identityv1.NewIdentityServiceClient(conn), func() {
			_ = conn.Close()
			cancel()
			require.NoError(t, <-done)
		}
	}

	client, stop := run()
	_, err := client.Register(t.Context(), &identityv1.RegisterRequest{Email: "ann@example.com", Password: "correct horse", Name: "Ann"})
	require.NoError(t, err)
	pair, err := client.Login(t.Context(), &identityv1.LoginRequest{Email: "ann@example.com", Password: "correct horse"})
	require.NoError(t, err)
	stop()

	client, stop = run()
	defer stop()
	me, err := client.GetMe(bearer(t.Context(), pair.GetAccessToken()), &identityv1.GetMeRequest{})
	require.NoError(t, err, "a token from before the restart verifies: the key was kept")
	require.Equal(t, "ann@example.com", me.GetEmail())
	_, err = client.Refresh(t.Context(), &identityv1.RefreshRequest{RefreshToken: pair.GetRefreshToken()})
	require.NoError(t, err)
}

func TestNewRefusesABadConfigBeforeStarting(t *testing.T) {
	_, err := identity.New(t.Context(), identity.Config{}, slog.New(slog.DiscardHandler))
	require.ErrorAs(t, err, new(*config.Error))
	require.ErrorContains(t, err, "identity configuration: ")
}

func TestConfigValidate(t *testing.T) {
	valid := identity.Config{
		Server: server.Config{GRPCAddr: ":9090", HTTPAddr: ":8081"},
		DB:     db.Config{URL: "data/identity.db"},
		Events: events.Config{URL: "nats://127.0.0.1:4222"},
	}
	require.NoError(t, valid.Validate(), "zero durations take their defaults")

	bad := identity.Config{
		DB:                   db.Config{URL: "postgres://[bad"},
		AdminEmail:           "not an email",
		AccessTokenTTL:       time.Second,
		RefreshTokenTTL:      -time.Hour,
		KeyRotationInterval:  time.Minute,
		KeyPublishLead:       time.Hour,
		MaxConcurrentHashes:  -1,
		LoginRatePerMinute:   -1,
		LoginIPRatePerMinute: -5,
		Events:               events.Config{StreamReplicas: 7},
	}
	err := bad.Validate()
	require.Error(t, err)
	for _, want := range []string{
		"gRPC listen address is empty",
		"database URL",
		"events: NATS URL is empty",
		"stream replicas must be 1 to 5, got 7",
		"admin email and admin password must be set together",
		"admin email: email must be a valid address",
		"access token lifetime must be 1m to 24h",
		"refresh token lifetime must exceed",
		"key rotation interval (1m0s) must exceed the key publish lead (1h0m0s)",
		"max concurrent hashes must be 1 to 256",
		"login rate per minute must not be negative",
		"login rate per IP per minute must not be negative",
	} {
		require.ErrorContains(t, err, want)
	}

	weak := valid
	weak.AdminEmail, weak.AdminPassword = "admin@example.com", "short"
	require.ErrorContains(t, weak.Validate(), "admin password: password must be at least 8 characters")
	lead := valid
	lead.KeyPublishLead, lead.KeyRefreshInterval = time.Minute, time.Minute
	require.ErrorContains(t, lead.Validate(), "must be at least twice the key refresh interval")
}

func first(values []string) string {
	if len(values) == 0 {
		return ""
	}
	return values[0]
}

package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	cartv1 "github.com/mercato-dev/mercato/internal/gen/cart/v1"
	catalogv1 "github.com/mercato-dev/mercato/internal/gen/catalog/v1"
	identityv1 "github.com/mercato-dev/mercato/internal/gen/identity/v1"
	inventoryv1 "github.com/mercato-dev/mercato/internal/gen/inventory/v1"
	notificationsv1 "github.com/mercato-dev/mercato/internal/gen/notifications/v1"
	ordersv1 "github.com/mercato-dev/mercato/internal/gen/orders/v1"
	paymentsv1 "github.com/mercato-dev/mercato/internal/gen/payments/v1"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/auth/authtest"
	"github.com/mercato-dev/mercato/internal/platform/observability"
)

// upstreamCall is one call a fake upstream received.
type upstreamCall struct {
	method   string
	md       metadata.MD
	req      proto.Message
	deadline time.Time
}

// fakeUpstream is a gRPC server on a loopback port standing in for a
// service. It records every call; reply, when set, answers instead of the
// default implementation (return nil, nil to fall through to it).
type fakeUpstream struct {
	addr   string
	server *grpc.Server
	health *health.Server

	mu    sync.Mutex
	last  upstreamCall
	count int
	reply func(ctx context.Context, method string, req any) (any, error)
}

func startFake(t testing.TB, register func(*grpc.Server)) *fakeUpstream {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f := &fakeUpstream{addr: lis.Addr().String(), health: health.NewServer()}
	f.server = grpc.NewServer(grpc.ChainUnaryInterceptor(f.intercept))
	healthpb.RegisterHealthServer(f.server, f.health)
	register(f.server)
	go func() { _ = f.server.Serve(lis) }()
	t.Cleanup(f.server.Stop)
	return f
}

func (f *fakeUpstream) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if strings.HasPrefix(info.FullMethod, "/grpc.health.") {
		return handler(ctx, req)
	}
	md, _ := metadata.FromIncomingContext(ctx)
	deadline, _ := ctx.Deadline()
	f.mu.Lock()
	f.last = upstreamCall{method: info.FullMethod, md: md, req: req.(proto.Message), deadline: deadline}
	f.count++
	reply := f.reply
	f.mu.Unlock()
	if reply != nil {
		if resp, err := reply(ctx, info.FullMethod, req); resp != nil || err != nil {
			return resp, err
		}
	}
	return handler(ctx, req)
}

// setReply replaces the answers until the test ends.
func (f *fakeUpstream) setReply(t testing.TB, reply func(ctx context.Context, method string, req any) (any, error)) {
	f.mu.Lock()
	f.reply = reply
	f.mu.Unlock()
	t.Cleanup(func() {
		f.mu.Lock()
		f.reply = nil
		f.mu.Unlock()
	})
}

// lastCall returns the most recent call (failing when there was none).
func (f *fakeUpstream) lastCall(t testing.TB) upstreamCall {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	require.NotZero(t, f.count, "the upstream was not called")
	return f.last
}

func (f *fakeUpstream) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count
}

// fakeCatalog answers like catalog would, from nothing.
type fakeCatalog struct {
	catalogv1.UnimplementedCatalogServiceServer
}

var testProductTime = timestamppb.New(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))

func testProduct(id string) *catalogv1.Product {
	return &catalogv1.Product{
		Id: id, Sku: "SKU-" + id, Name: "Kettle", PriceCents: 4599, Currency: "EUR",
		Categories: []string{"kitchen"}, ImageUrl: "https://img.example/" + id,
		CreatedAt: testProductTime, UpdatedAt: testProductTime,
	}
}

func (fakeCatalog) GetProduct(ctx context.Context, req *catalogv1.GetProductRequest) (*catalogv1.Product, error) {
	_ = grpc.SetHeader(ctx, metadata.Pairs("etag", `"v3"`, "x-internal-detail", "secret"))
	return testProduct(req.GetId()), nil
}

func (fakeCatalog) ListProducts(_ context.Context, req *catalogv1.ListProductsRequest) (*catalogv1.ListProductsResponse, error) {
	resp := &catalogv1.ListProductsResponse{NextPageToken: "after-" + req.GetPageToken()}
	for i := int32(0); i < req.GetPageSize(); i++ {
		resp.Products = append(resp.Products, testProduct("p"+string('a'+i)))
	}
	return resp, nil
}

func (fakeCatalog) CreateProduct(_ context.Context, req *catalogv1.CreateProductRequest) (*catalogv1.Product, error) {
	return &catalogv1.Product{
		Id: "p-new", Sku: req.GetSku(), Name: req.GetName(), PriceCents: req.GetPriceCents(),
		Currency: req.GetCurrency(), Categories: req.GetCategories(), CreatedAt: testProductTime, UpdatedAt: testProductTime,
	}, nil
}

func (fakeCatalog) UpdateProduct(ctx context.Context, req *catalogv1.UpdateProductRequest) (*catalogv1.Product, error) {
	_ = grpc.SetHeader(ctx, metadata.Pairs("etag", `"v4"`))
	p := testProduct(req.GetId())
	p.Name = req.GetProduct().GetName()
	return p, nil
}

func (fakeCatalog) DeleteProduct(context.Context, *catalogv1.DeleteProductRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

// fakeIdentity answers like identity would, from nothing.
type fakeIdentity struct {
	identityv1.UnimplementedIdentityServiceServer
}

func (fakeIdentity) Register(_ context.Context, req *identityv1.RegisterRequest) (*identityv1.User, error) {
	return &identityv1.User{Id: "u-new", Email: req.GetEmail(), Name: req.GetName(), Role: "customer", CreatedAt: testProductTime}, nil
}

func (fakeIdentity) Login(context.Context, *identityv1.LoginRequest) (*identityv1.TokenPair, error) {
	return &identityv1.TokenPair{AccessToken: "a", RefreshToken: "r", TokenType: "Bearer", ExpiresIn: 900}, nil
}

func (fakeIdentity) Logout(context.Context, *identityv1.LogoutRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

func (fakeIdentity) GetMe(context.Context, *identityv1.GetMeRequest) (*identityv1.User, error) {
	return &identityv1.User{Id: "u-1", Email: "u-1@example.test", Role: "customer"}, nil
}

// syncBuffer is a log sink safe for the gateway's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testGateway is a running gateway with fake neighbours.
type testGateway struct {
	gw       *Gateway
	url      string
	catalog  *fakeUpstream
	identity *fakeUpstream
	issuer   *authtest.Issuer
	logs     *syncBuffer
	client   *http.Client
	stop     func() error
}

// startGateway runs a gateway against fresh fake upstreams on loopback
// ports; adjust changes the configuration first.
func startGateway(t testing.TB, adjust func(*Config)) *testGateway {
	t.Helper()
	return startGatewayLogging(t, adjust, nil)
}

// startGatewayLogging is startGateway with the logs going to w (the
// test's buffer when nil).
func startGatewayLogging(t testing.TB, adjust func(*Config), w io.Writer) *testGateway {
	t.Helper()
	tg := &testGateway{
		catalog:  startFake(t, func(s *grpc.Server) { catalogv1.RegisterCatalogServiceServer(s, fakeCatalog{}) }),
		identity: startFake(t, func(s *grpc.Server) { identityv1.RegisterIdentityServiceServer(s, fakeIdentity{}) }),
		issuer:   authtest.New(t),
		logs:     &syncBuffer{},
	}
	cfg := Config{
		Addr:            "127.0.0.1:0",
		AdminAddr:       "127.0.0.1:0",
		Keys:            auth.KeysConfig{Source: tg.issuer.KeySource()},
		ShutdownTimeout: 5 * time.Second,
	}
	// The checkout services are not exercised here: one server answering
	// Unimplemented for all of them keeps the gateway's upstreams ready.
	rest := startFake(t, func(s *grpc.Server) {
		inventoryv1.RegisterInventoryServiceServer(s, inventoryv1.UnimplementedInventoryServiceServer{})
		cartv1.RegisterCartServiceServer(s, cartv1.UnimplementedCartServiceServer{})
		ordersv1.RegisterOrdersServiceServer(s, ordersv1.UnimplementedOrdersServiceServer{})
		paymentsv1.RegisterPaymentsServiceServer(s, paymentsv1.UnimplementedPaymentsServiceServer{})
		notificationsv1.RegisterNotificationsServiceServer(s, notificationsv1.UnimplementedNotificationsServiceServer{})
	})
	cfg.Upstreams = testUpstreams(func(name string) string {
		switch name {
		case "identity":
			return tg.identity.addr
		case "catalog":
			return tg.catalog.addr
		}
		return rest.addr
	})
	if w == nil {
		w = tg.logs
	}
	cfg.AccessLog = w
	if adjust != nil {
		adjust(&cfg)
	}
	logger := observability.NewLogger(w, "gateway", slog.LevelInfo)
	ctx, cancel := context.WithCancel(context.Background())
	gw, err := New(ctx, cfg, logger)
	require.NoError(t, err)
	tg.gw = gw
	tg.url = "http://" + gw.Addr()
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()
	var once sync.Once
	var runErr error
	tg.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(10 * time.Second):
				runErr = errors.New("gateway did not stop")
			}
		})
		return runErr
	}
	transport := &http.Transport{MaxIdleConnsPerHost: 64}
	tg.client = &http.Client{Transport: transport, Timeout: 15 * time.Second}
	t.Cleanup(func() {
		transport.CloseIdleConnections()
		require.NoError(t, tg.stop())
	})
	return tg
}

// do sends a request and returns the response with its body read.
func (tg *testGateway) do(t testing.TB, method, path string, body io.Reader, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, tg.url+path, body)
	require.NoError(t, err)
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := tg.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, b
}

// bearer returns a header carrying token.
func bearer(token string) http.Header {
	return http.Header{"Authorization": {"Bearer " + token}}
}

package orders_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
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

	cartv1 "github.com/mercato-dev/mercato/internal/gen/cart/v1"
	catalogv1 "github.com/mercato-dev/mercato/internal/gen/catalog/v1"
	inventoryv1 "github.com/mercato-dev/mercato/internal/gen/inventory/v1"
	ordersv1 "github.com/mercato-dev/mercato/internal/gen/orders/v1"
	paymentsv1 "github.com/mercato-dev/mercato/internal/gen/payments/v1"
	"github.com/mercato-dev/mercato/internal/orders"
	"github.com/mercato-dev/mercato/internal/orders/app"
	"github.com/mercato-dev/mercato/internal/orders/domain"
	"github.com/mercato-dev/mercato/internal/orders/orderstest"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/auth/authtest"
	"github.com/mercato-dev/mercato/internal/platform/config"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
	"github.com/mercato-dev/mercato/internal/platform/events"
	"github.com/mercato-dev/mercato/internal/platform/events/natstest"
	"github.com/mercato-dev/mercato/internal/platform/server"
)

type neighbours struct {
	catalog *orderstest.Catalog
	cart    *orderstest.Cart
	inv     *orderstest.Inventory
	pay     *orderstest.Payments
	addr    string
}

// serveNeighbours serves the fakes over gRPC behind the same authentication
// the real services use: inventory and payments refuse anything but a
// service token, the cart identifies the user by the forwarded token.
func serveNeighbours(t *testing.T, issuer *authtest.Issuer) *neighbours {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	verifier := auth.NewVerifier(issuer.KeySource(), auth.DefaultIssuer, auth.DefaultAudience)
	gs := grpc.NewServer(grpc.ChainUnaryInterceptor(
		server.ErrorMapping(logger),
		auth.UnaryServerInterceptor(verifier, logger, catalogv1.CatalogService_BatchGetProducts_FullMethodName),
	))
	n := &neighbours{
		catalog: orderstest.NewCatalog(
			&catalogv1.Product{Id: "prod-mug", Sku: "SKU-MUG", Name: "Mug", PriceCents: 1250, Currency: "EUR"},
			&catalogv1.Product{Id: "prod-pen", Sku: "SKU-PEN", Name: "Pen", PriceCents: 99, Currency: "EUR"},
		),
		cart: orderstest.NewCart(issuer.KeySource()),
		inv:  orderstest.NewInventory(),
		pay:  orderstest.NewPayments(),
	}
	n.inv.SetOnHand("SKU-MUG", 10)
	catalogv1.RegisterCatalogServiceServer(gs, n.catalog)
	cartv1.RegisterCartServiceServer(gs, n.cart)
	inventoryv1.RegisterInventoryServiceServer(gs, n.inv)
	paymentsv1.RegisterPaymentsServiceServer(gs, n.pay)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	n.addr = lis.Addr().String()
	return n
}

type component struct {
	svc    *orders.Service
	client ordersv1.OrdersServiceClient
	js     jetstream.JetStream
	issuer *authtest.Issuer
	n      *neighbours
}

func startService(t *testing.T, dbURL string) *component {
	t.Helper()
	natsURL := natstest.Start(t)
	issuer := authtest.New(t)
	n := serveNeighbours(t, issuer)
	cfg := orders.Config{
		Server: server.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second},
		DB:     db.Config{URL: dbURL},
		Events: events.Config{URL: natsURL}, Keys: auth.KeysConfig{Source: issuer.KeySource()},
		CatalogAddr: n.addr, CartAddr: n.addr, InventoryAddr: n.addr, PaymentsAddr: n.addr,
		ServiceToken: func(context.Context) (string, time.Duration, error) {
			return issuer.Token("orders", auth.RoleService), 15 * time.Minute, nil
		},
		SagaPollInterval: 50 * time.Millisecond,
		SagaStuckAfter:   time.Second,
		PageTokenKey:     "a-page-token-key-for-tests",
		InstanceID:       "component-test",
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := orders.New(t.Context(), cfg, logger)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	conn, err := grpc.NewClient(svc.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	_, js := natstest.Connect(t, natsURL)
	return &component{svc: svc, client: ordersv1.NewOrdersServiceClient(conn), js: js, issuer: issuer, n: n}
}

// as returns a context calling as userID, with an idempotency key when key
// is not empty.
func (c *component) as(t *testing.T, userID, role, key string) context.Context {
	md := metadata.Pairs("authorization", "Bearer "+c.issuer.Token(userID, role))
	if key != "" {
		md.Set("idempotency-key", key)
	}
	return metadata.NewOutgoingContext(t.Context(), md)
}

func placeRequest(items ...*ordersv1.OrderItemInput) *ordersv1.PlaceOrderRequest {
	return &ordersv1.PlaceOrderRequest{
		Items: items, PaymentToken: "tok_visa",
		ShippingAddress: &ordersv1.Address{Name: "Ada Lovelace", Line1: "1 Main St", City: "London", PostalCode: "N1 9GU", Country: "GB"},
	}
}

func (c *component) waitStatus(t *testing.T, ctx context.Context, id, want string) *ordersv1.Order {
	t.Helper()
	var got *ordersv1.Order
	require.Eventually(t, func() bool {
		o, err := c.client.GetOrder(ctx, &ordersv1.GetOrderRequest{Id: id})
		if err != nil {
			return false
		}
		got = o
		return o.GetStatus() == want
	}, 15*time.Second, 20*time.Millisecond, "order %s never became %s", id, want)
	return got
}

// event waits for the order's event on subject in JetStream.
func (c *component) event(t *testing.T, subject, orderID string) (app.OrderMessage, jetstream.Msg) {
	t.Helper()
	cons, err := c.js.OrderedConsumer(t.Context(), orders.Streams[0].Name, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	require.NoError(t, err)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		msg, err := cons.Next(jetstream.FetchMaxWait(time.Second))
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrNoMessages) {
			continue
		}
		require.NoError(t, err)
		var m app.OrderMessage
		require.NoError(t, json.Unmarshal(msg.Data(), &m))
		if m.OrderID == orderID {
			return m, msg
		}
	}
	t.Fatalf("no %s event for order %s", subject, orderID)
	return app.OrderMessage{}, nil
}

func TestService(t *testing.T) {
	for _, engine := range dbtest.Engines(t) {
		t.Run(engine.Name, func(t *testing.T) { testService(t, engine.URL) })
	}
}

func testService(t *testing.T, dbURL string) {
	c := startService(t, dbURL)

	t.Run("anonymous calls are refused", func(t *testing.T) {
		_, err := c.client.GetOrder(t.Context(), &ordersv1.GetOrderRequest{Id: "x"})
		require.Equal(t, codes.Unauthenticated, status.Code(err))
	})

	t.Run("an idempotency key is required", func(t *testing.T) {
		_, err := c.client.PlaceOrder(c.as(t, "u-nokey", auth.RoleCustomer, ""),
			placeRequest(&ordersv1.OrderItemInput{ProductId: "prod-mug", Quantity: 1}))
		require.Equal(t, codes.InvalidArgument, status.Code(err))
		require.Equal(t, "Idempotency-Key header is required", status.Convert(err).Message())
	})

	t.Run("checkout confirms and announces order.confirmed", func(t *testing.T) {
		ctx := c.as(t, "u-happy", auth.RoleCustomer, "happy-1")
		o, err := c.client.PlaceOrder(ctx, placeRequest(&ordersv1.OrderItemInput{ProductId: "prod-mug", Quantity: 2}))
		require.NoError(t, err)
		require.Equal(t, "pending", o.GetStatus())
		require.Equal(t, int32(2500), o.GetTotalCents())

		again, err := c.client.PlaceOrder(ctx, placeRequest(&ordersv1.OrderItemInput{ProductId: "prod-mug", Quantity: 2}))
		require.NoError(t, err)
		require.Equal(t, o.GetId(), again.GetId(), "the same key returns the same order")
		_, err = c.client.PlaceOrder(ctx, placeRequest(&ordersv1.OrderItemInput{ProductId: "prod-mug", Quantity: 3}))
		require.Equal(t, codes.InvalidArgument, status.Code(err))
		require.Equal(t, "unprocessable", errorReason(err), "the gateway answers 422")

		confirmed := c.waitStatus(t, ctx, o.GetId(), "confirmed")
		require.Equal(t, "u-happy", confirmed.GetUserId())

		m, msg := c.event(t, app.SubjectOrderConfirmed, o.GetId())
		require.Equal(t, "u-happy", m.UserID)
		require.Equal(t, "u-happy@example.test", m.Email)
		require.Equal(t, "confirmed", m.Status)
		require.Len(t, m.Items, 1)
		require.Equal(t, "prod-mug", m.Items[0].ProductID)
		require.Equal(t, int64(2), m.Items[0].Quantity)
		require.Equal(t, int64(2500), m.TotalCents)
		require.False(t, m.FromCart, "the items were listed: the cart is left alone")
		require.Equal(t, o.GetId()+":order.confirmed", msg.Headers().Get(events.HeaderEventID))
		require.Equal(t, 1, c.n.pay.Captures(o.GetId()))

		evs, err := c.client.ListOrderEvents(ctx, &ordersv1.ListOrderEventsRequest{Id: o.GetId()})
		require.NoError(t, err)
		var names []string
		for _, ev := range evs.GetEvents() {
			names = append(names, ev.GetType())
		}
		require.Equal(t, []string{"OrderPlaced", "StockReserved", "PaymentAuthorized", "StockCommitted", "PaymentCaptured", "OrderConfirmed"}, names)
		placed := evs.GetEvents()[0].GetData().AsMap()
		require.NotContains(t, placed, "payment_token", "the card token is not shown back")
		require.Equal(t, "u-happy", placed["user_id"])

		_, err = c.client.GetOrder(c.as(t, "u-stranger", auth.RoleCustomer, ""), &ordersv1.GetOrderRequest{Id: o.GetId()})
		require.Equal(t, codes.NotFound, status.Code(err))

		cancelled, err := c.client.CancelOrder(ctx, &ordersv1.CancelOrderRequest{Id: o.GetId(), Reason: "arrived broken"})
		require.NoError(t, err)
		if cancelled.GetStatus() != "cancelled" {
			cancelled = c.waitStatus(t, ctx, o.GetId(), "cancelled")
		}
		require.True(t, cancelled.GetRefunded())
		require.Equal(t, "arrived broken", cancelled.GetReason())
		refunded, _ := c.event(t, app.SubjectOrderRefunded, o.GetId())
		require.True(t, refunded.Refunded)
		require.Equal(t, orderstest.StockLevel{OnHand: 10}, c.n.inv.Stock("SKU-MUG"))

		_, err = c.client.CancelOrder(ctx, &ordersv1.CancelOrderRequest{Id: o.GetId()})
		require.Equal(t, codes.AlreadyExists, status.Code(err))
		require.Equal(t, "order is already cancelled", status.Convert(err).Message())
	})

	t.Run("checkout of the cart uses the caller's own token", func(t *testing.T) {
		c.n.cart.Set("u-cart", &cartv1.CartItem{ProductId: "prod-mug", Quantity: 1})
		ctx := c.as(t, "u-cart", auth.RoleCustomer, "cart-1")
		o, err := c.client.PlaceOrder(ctx, placeRequest())
		require.NoError(t, err)
		require.Equal(t, int32(1250), o.GetTotalCents())
		c.waitStatus(t, ctx, o.GetId(), "confirmed")
		m, _ := c.event(t, app.SubjectOrderConfirmed, o.GetId())
		require.True(t, m.FromCart)
	})

	t.Run("an unknown card is refused before anything is written", func(t *testing.T) {
		ctx := c.as(t, "u-card", auth.RoleCustomer, "card-1")
		req := placeRequest(&ordersv1.OrderItemInput{ProductId: "prod-mug", Quantity: 1})
		req.PaymentToken = "tok_unknownCard"
		_, err := c.client.PlaceOrder(ctx, req)
		require.Equal(t, codes.InvalidArgument, status.Code(err))
		require.Equal(t, "invalid", errorReason(err))
		require.Equal(t, "payment_token is not a card the payment provider knows", status.Convert(err).Message())
		list, err := c.client.ListOrders(ctx, &ordersv1.ListOrdersRequest{})
		require.NoError(t, err)
		require.Empty(t, list.GetOrders())

		// Payments unreachable: 503, and still nothing.
		c.n.pay.SetDown(true)
		req.PaymentToken = "tok_visa"
		_, err = c.client.PlaceOrder(ctx, req)
		c.n.pay.SetDown(false)
		require.Equal(t, codes.Unavailable, status.Code(err))
		require.Equal(t, "payments is unavailable, retry later", status.Convert(err).Message())
		list, err = c.client.ListOrders(ctx, &ordersv1.ListOrdersRequest{})
		require.NoError(t, err)
		require.Empty(t, list.GetOrders())
	})

	t.Run("out of stock is rejected", func(t *testing.T) {
		ctx := c.as(t, "u-short", auth.RoleCustomer, "short-1")
		o, err := c.client.PlaceOrder(ctx, placeRequest(&ordersv1.OrderItemInput{ProductId: "prod-pen", Quantity: 1}))
		require.NoError(t, err)
		rejected := c.waitStatus(t, ctx, o.GetId(), "rejected")
		require.Equal(t, "out of stock: SKU-PEN", rejected.GetReason())
		m, _ := c.event(t, app.SubjectOrderRejected, o.GetId())
		require.Equal(t, "out of stock: SKU-PEN", m.Reason)
	})

	t.Run("validation errors name the field", func(t *testing.T) {
		req := placeRequest(&ordersv1.OrderItemInput{ProductId: "prod-mug", Quantity: 0})
		_, err := c.client.PlaceOrder(c.as(t, "u-bad", auth.RoleCustomer, "bad-1"), req)
		require.Equal(t, codes.InvalidArgument, status.Code(err))
		require.Equal(t, "items[0].quantity must be between 1 and 100", status.Convert(err).Message())
		_, err = c.client.ListOrders(c.as(t, "u-bad", auth.RoleCustomer, ""), &ordersv1.ListOrdersRequest{PageSize: 101})
		require.Equal(t, codes.InvalidArgument, status.Code(err))
	})

	t.Run("a payment that cannot be returned needs attention, listed for admins only", func(t *testing.T) {
		ctx := c.as(t, "u-attention", auth.RoleCustomer, "attention-1")
		o, err := c.client.PlaceOrder(ctx, placeRequest(&ordersv1.OrderItemInput{ProductId: "prod-mug", Quantity: 1}))
		require.NoError(t, err)
		c.waitStatus(t, ctx, o.GetId(), "confirmed")
		c.n.pay.Refuse("Refund")
		c.n.pay.Refuse("Void")
		t.Cleanup(func() {
			c.n.pay.Unrefuse("Refund")
			c.n.pay.Unrefuse("Void")
		})
		_, err = c.client.CancelOrder(ctx, &ordersv1.CancelOrderRequest{Id: o.GetId()})
		require.NoError(t, err)
		got := c.waitStatus(t, ctx, o.GetId(), "needs_attention")
		require.Equal(t, domain.ReasonPaymentNotReturned, got.GetReason())
		require.False(t, got.GetRefunded())
		_, err = c.client.CancelOrder(ctx, &ordersv1.CancelOrderRequest{Id: o.GetId()})
		require.Equal(t, codes.AlreadyExists, status.Code(err), "a conflict: 409")

		admin := c.as(t, "u-admin", auth.RoleAdmin, "")
		page, err := c.client.ListStuckOrders(admin, &ordersv1.ListStuckOrdersRequest{PageSize: 100})
		require.NoError(t, err)
		var listed *ordersv1.StuckOrder
		for _, s := range page.GetOrders() {
			if s.GetOrder().GetId() == o.GetId() {
				listed = s
			}
		}
		require.NotNil(t, listed, "the order is listed for admins")
		require.Equal(t, "needs_attention", listed.GetOrder().GetStatus())
		require.Equal(t, "done", listed.GetStep())
		require.Nil(t, listed.GetNextAttemptAt())
		require.Contains(t, listed.GetLastError(), "payments refused both")

		_, err = c.client.ListStuckOrders(ctx, &ordersv1.ListStuckOrdersRequest{})
		require.Equal(t, codes.PermissionDenied, status.Code(err), "customers may not list them")

		require.Eventually(t, func() bool {
			return strings.Contains(scrape(t, c), "\nmercato_orders_needs_attention 1\n")
		}, 15*time.Second, 50*time.Millisecond, "the gauge counts the order")
	})

	t.Run("saga metrics are exported", func(t *testing.T) {
		resp, err := http.Get("http://" + c.svc.HTTPAddr() + "/metrics")
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		text := string(body)
		require.Contains(t, text, `mercato_orders_saga_outcomes_total{reason="confirmed",status="confirmed"}`)
		require.Contains(t, text, `mercato_orders_saga_outcomes_total{reason="out_of_stock",status="rejected"}`)
		require.Contains(t, text, `mercato_orders_saga_duration_seconds_bucket`)
		require.Contains(t, text, "mercato_orders_in_flight")
		require.Contains(t, text, `mercato_orders_stuck{step="capture_payment"}`)
		require.True(t, strings.Contains(text, `circuit_breaker_state{target="inventory"}`))
	})
}

// scrape returns the service's metrics page.
func scrape(t *testing.T, c *component) string {
	t.Helper()
	resp, err := http.Get("http://" + c.svc.HTTPAddr() + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(body)
}

func errorReason(err error) string {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}

func TestConfigValidate(t *testing.T) {
	bad := orders.Config{SagaWorkers: -1, CrashAfter: "Nope", PageTokenKey: "short"}
	err := bad.Validate()
	require.Error(t, err)
	for _, want := range []string{
		"gRPC listen address is empty", "database URL is empty", "events: NATS URL is empty", "keys: JWKS URL is empty",
		"catalog address is empty", "cart address is empty", "inventory address is empty", "payments address is empty",
		"identity address is empty", "service secret is empty", "saga workers must be between 1 and 1024",
		"page token key must be at least 16 bytes", `crash-after fault "Nope" is not an event type`,
	} {
		require.Contains(t, err.Error(), want)
	}
	_, err = orders.New(t.Context(), bad, slog.New(slog.DiscardHandler))
	require.ErrorAs(t, err, new(*config.Error), "New refuses to start half-configured")
	require.ErrorContains(t, err, "orders configuration: ")
	good := orders.Config{
		Server: server.Config{GRPCAddr: ":9090", HTTPAddr: ":8081"},
		DB:     db.Config{URL: "orders.db"},
		Events: events.Config{URL: "nats://nats:4222"}, Keys: auth.KeysConfig{JWKSURL: "http://identity:8081/.well-known/jwks.json"},
		CatalogAddr: "catalog:9090", CartAddr: "cart:9090", InventoryAddr: "inventory:9090",
		PaymentsAddr: "payments:9090", IdentityAddr: "identity:9090", ServiceSecret: "s3cret",
	}
	require.NoError(t, good.Validate())
	for _, point := range []string{"StockReserved", "before:PaymentCaptured", "OrderPlaced"} {
		good.CrashAfter = point
		require.NoError(t, good.Validate(), point)
	}
	good.SagaDeadline = 10 * time.Millisecond
	require.ErrorContains(t, good.Validate(), "saga deadline must be between 1s and 1h")
	good.SagaDeadline = 0
	good.SagaStuckAfter = 25 * time.Hour
	require.ErrorContains(t, good.Validate(), "saga stuck threshold must be between 1s and 24h")
}

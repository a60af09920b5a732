package payments_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	paymentsv1 "github.com/mercato-dev/mercato/internal/gen/payments/v1"
	"github.com/mercato-dev/mercato/internal/payments"
	"github.com/mercato-dev/mercato/internal/payments/domain"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/auth/authtest"
	"github.com/mercato-dev/mercato/internal/platform/config"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
	"github.com/mercato-dev/mercato/internal/platform/events"
	"github.com/mercato-dev/mercato/internal/platform/events/natstest"
	"github.com/mercato-dev/mercato/internal/platform/server"
)

// TestPaymentsService runs the real service on loopback ports, with an
// embedded NATS, and talks to it over gRPC as orders and shoppers would.
func TestPaymentsService(t *testing.T) {
	for _, engine := range dbtest.Engines(t) {
		t.Run(engine.Name, func(t *testing.T) { testService(t, engine.URL) })
	}
}

type harness struct {
	svc    *payments.Service
	client paymentsv1.PaymentsServiceClient
	issuer *authtest.Issuer
	js     jetstream.JetStream
}

func start(t *testing.T, dbURL string) *harness {
	t.Helper()
	natsURL := natstest.Start(t)
	issuer := authtest.New(t)
	svc, err := payments.New(t.Context(), payments.Config{
		Server:       server.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second},
		DB:           db.Config{URL: dbURL},
		Events:       events.Config{URL: natsURL},
		Keys:         auth.KeysConfig{Source: issuer.KeySource()},
		ProviderSeed: 1,
	}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-stopped:
			require.NoError(t, err)
		case <-time.After(15 * time.Second):
			t.Error("service did not stop")
		}
	})

	conn, err := grpc.NewClient(svc.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	_, js := natstest.Connect(t, natsURL)
	return &harness{svc: svc, client: paymentsv1.NewPaymentsServiceClient(conn), issuer: issuer, js: js}
}

func (h *harness) as(t *testing.T, userID, role string) context.Context {
	return auth.OutgoingToken(t.Context(), h.issuer.Token(userID, role))
}

func newID(t *testing.T) string {
	t.Helper()
	id, err := uuid.NewV7()
	require.NoError(t, err)
	return id.String()
}

func requireCode(t *testing.T, err error, code codes.Code, reason string) {
	t.Helper()
	st, ok := status.FromError(err)
	require.True(t, ok, "not a gRPC status: %v", err)
	require.Equal(t, code, st.Code(), st.Message())
	if reason == "" {
		return
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			require.Equal(t, reason, info.GetReason())
			return
		}
	}
	t.Fatalf("no ErrorInfo on %v", err)
}

func testService(t *testing.T, dbURL string) {
	h := start(t, dbURL)
	orders := h.as(t, "orders", auth.RoleService)
	shopperID := newID(t)
	shopper := h.as(t, shopperID, auth.RoleCustomer)
	admin := h.as(t, newID(t), auth.RoleAdmin)
	orderID := newID(t)
	authorize := &paymentsv1.AuthorizeRequest{
		IdempotencyKey: "order/" + orderID, OrderId: orderID, UserId: shopperID,
		AmountCents: 12_345, Currency: "EUR", PaymentToken: "tok_visa",
	}

	t.Run("anonymous and customer calls are refused", func(t *testing.T) {
		_, err := h.client.Authorize(t.Context(), authorize)
		requireCode(t, err, codes.Unauthenticated, "")
		_, err = h.client.Authorize(shopper, authorize)
		requireCode(t, err, codes.PermissionDenied, "forbidden")
		_, err = h.client.ListPayments(t.Context(), &paymentsv1.ListPaymentsRequest{OrderId: orderID})
		requireCode(t, err, codes.Unauthenticated, "")
	})

	var payment *paymentsv1.Payment
	t.Run("authorize and capture", func(t *testing.T) {
		var err error
		payment, err = h.client.Authorize(orders, authorize)
		require.NoError(t, err)
		require.Equal(t, "authorized", payment.GetStatus())
		require.Equal(t, "visa", payment.GetCardBrand())
		require.Equal(t, int32(12_345), payment.GetAmountCents())

		again, err := h.client.Authorize(orders, authorize)
		require.NoError(t, err)
		require.Equal(t, payment.GetId(), again.GetId())
		require.Equal(t, 1, h.svc.Provider().Calls("authorize"))

		captured, err := h.client.Capture(orders, &paymentsv1.CaptureRequest{PaymentId: payment.GetId()})
		require.NoError(t, err)
		require.Equal(t, "captured", captured.GetStatus())
		twice, err := h.client.Capture(orders, &paymentsv1.CaptureRequest{PaymentId: payment.GetId()})
		require.NoError(t, err)
		require.Equal(t, "captured", twice.GetStatus())

		_, err = h.client.Void(orders, &paymentsv1.VoidRequest{PaymentId: payment.GetId()})
		requireCode(t, err, codes.AlreadyExists, "conflict")
		require.Equal(t, "payment is captured; refund it instead", status.Convert(err).Message())
	})

	t.Run("payment.captured reaches JetStream", func(t *testing.T) {
		var got domain.PaymentEvent
		require.Eventually(t, func() bool {
			stream, err := h.js.Stream(t.Context(), payments.Streams[0].Name)
			if err != nil {
				return false
			}
			msg, err := stream.GetLastMsgForSubject(t.Context(), domain.SubjectCaptured)
			if err != nil {
				return false
			}
			return json.Unmarshal(msg.Data, &got) == nil
		}, 10*time.Second, 20*time.Millisecond)
		require.Equal(t, domain.PaymentEvent{
			PaymentID: payment.GetId(), OrderID: orderID, UserID: shopperID,
			AmountCents: 12_345, Currency: "EUR", Status: "captured",
		}, got)

		stream, err := h.js.Stream(t.Context(), payments.Streams[0].Name)
		require.NoError(t, err)
		info, err := stream.Info(t.Context(), jetstream.WithSubjectFilter(domain.SubjectCaptured))
		require.NoError(t, err)
		require.Equal(t, uint64(1), info.State.Subjects[domain.SubjectCaptured], "captured twice, announced once")
	})

	t.Run("list payments: owner and admin, nobody else", func(t *testing.T) {
		list, err := h.client.ListPayments(shopper, &paymentsv1.ListPaymentsRequest{OrderId: orderID})
		require.NoError(t, err)
		require.Len(t, list.GetPayments(), 1)
		require.Equal(t, payment.GetId(), list.GetPayments()[0].GetId())

		list, err = h.client.ListPayments(admin, &paymentsv1.ListPaymentsRequest{OrderId: orderID})
		require.NoError(t, err)
		require.Len(t, list.GetPayments(), 1)

		_, err = h.client.ListPayments(h.as(t, newID(t), auth.RoleCustomer), &paymentsv1.ListPaymentsRequest{OrderId: orderID})
		requireCode(t, err, codes.NotFound, "not_found")
		_, err = h.client.ListPayments(shopper, &paymentsv1.ListPaymentsRequest{})
		requireCode(t, err, codes.InvalidArgument, "invalid")
	})

	t.Run("client errors", func(t *testing.T) {
		unknown := &paymentsv1.AuthorizeRequest{
			IdempotencyKey: "k-" + newID(t), OrderId: newID(t), UserId: shopperID,
			AmountCents: 100, Currency: "USD", PaymentToken: "tok_unknown",
		}
		_, err := h.client.Authorize(orders, unknown)
		requireCode(t, err, codes.InvalidArgument, "invalid")
		require.Equal(t, "unknown payment token", status.Convert(err).Message())

		reused := &paymentsv1.AuthorizeRequest{
			IdempotencyKey: authorize.GetIdempotencyKey(), OrderId: orderID, UserId: shopperID,
			AmountCents: 1, Currency: "EUR", PaymentToken: "tok_visa",
		}
		_, err = h.client.Authorize(orders, reused)
		requireCode(t, err, codes.InvalidArgument, "unprocessable")

		_, err = h.client.Refund(orders, &paymentsv1.RefundRequest{PaymentId: newID(t)})
		requireCode(t, err, codes.NotFound, "not_found")
	})

	t.Run("check a payment token", func(t *testing.T) {
		m, err := h.client.CheckPaymentToken(orders, &paymentsv1.CheckPaymentTokenRequest{PaymentToken: "tok_mastercard"})
		require.NoError(t, err)
		require.Equal(t, "mastercard", m.GetCardBrand())

		_, err = h.client.CheckPaymentToken(orders, &paymentsv1.CheckPaymentTokenRequest{PaymentToken: "tok_unknownCard"})
		requireCode(t, err, codes.InvalidArgument, "invalid")
		require.Equal(t, "unknown payment token", status.Convert(err).Message())
		_, err = h.client.CheckPaymentToken(orders, &paymentsv1.CheckPaymentTokenRequest{})
		requireCode(t, err, codes.InvalidArgument, "invalid")

		_, err = h.client.CheckPaymentToken(shopper, &paymentsv1.CheckPaymentTokenRequest{PaymentToken: "tok_visa"})
		requireCode(t, err, codes.PermissionDenied, "forbidden")
		_, err = h.client.CheckPaymentToken(t.Context(), &paymentsv1.CheckPaymentTokenRequest{PaymentToken: "tok_visa"})
		requireCode(t, err, codes.Unauthenticated, "")
	})

	t.Run("provider outage", func(t *testing.T) {
		req := &paymentsv1.AuthorizeRequest{
			IdempotencyKey: "k-" + newID(t), OrderId: newID(t), UserId: shopperID,
			AmountCents: 100, Currency: "USD", PaymentToken: "tok_mastercard",
		}
		h.svc.Provider().SetDown(true)
		_, err := h.client.Authorize(orders, req)
		requireCode(t, err, codes.Unavailable, "unavailable")
		h.svc.Provider().SetDown(false)
		p, err := h.client.Authorize(orders, req)
		require.NoError(t, err)
		require.Equal(t, "authorized", p.GetStatus())
		require.Equal(t, "mastercard", p.GetCardBrand())
	})

	t.Run("metrics and readiness", func(t *testing.T) {
		base := "http://" + h.svc.HTTPAddr()
		require.Eventually(t, func() bool {
			code, _ := get(t, base+"/readyz")
			return code == http.StatusOK
		}, 10*time.Second, 20*time.Millisecond)
		code, body := get(t, base+"/metrics")
		require.Equal(t, http.StatusOK, code)
		for _, want := range []string{
			`mercato_payments_provider_calls_total{operation="authorize",outcome="approved"}`,
			`mercato_payments_provider_calls_total{operation="authorize",outcome="unavailable"} 1`,
			`mercato_payments_provider_calls_total{operation="authorize",outcome="rejected"} 1`,
			`mercato_payments_provider_calls_total{operation="capture",outcome="ok"} 1`,
			`mercato_payments_status_transitions_total{from="authorized",to="captured"} 1`,
		} {
			require.Contains(t, body, want)
		}
	})
}

func get(t *testing.T, url string) (int, string) {
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, ""
	}
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func TestConfigValidate(t *testing.T) {
	valid := payments.Config{
		Server: server.Config{GRPCAddr: ":9090", HTTPAddr: ":8081"},
		DB:     db.Config{URL: "data/payments.db"},
		Events: events.Config{URL: "nats://nats:4222"},
		Keys:   auth.KeysConfig{JWKSURL: "http://identity:8081/.well-known/jwks.json"},
	}
	require.NoError(t, valid.Validate())

	bad := valid
	bad.ProviderLatency = -time.Second
	bad.ProviderFailureRate = 1.5
	bad.Events.URL = ""
	err := bad.Validate()
	require.Error(t, err)
	for _, want := range []string{"latency", "failure rate", "NATS"} {
		require.Contains(t, err.Error(), want)
	}
	_, err = payments.New(t.Context(), bad, slog.New(slog.DiscardHandler))
	require.ErrorAs(t, err, new(*config.Error), "New refuses to start half-configured")
	require.ErrorContains(t, err, "payments configuration: ")

	for _, rate := range []float64{-0.1, 1.01} {
		c := valid
		c.ProviderFailureRate = rate
		require.Error(t, c.Validate(), rate)
	}
	c := valid
	c.ProviderLatency = payments.MaxProviderLatency + time.Millisecond
	require.Error(t, c.Validate())
	c.ProviderLatency, c.ProviderFailureRate = payments.MaxProviderLatency, 1
	require.NoError(t, c.Validate())
}

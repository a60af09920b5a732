// Package ports exposes the payments service over gRPC.
package ports

import (
	"context"

	"google.golang.org/protobuf/types/known/timestamppb"

	paymentsv1 "github.com/mercato-dev/mercato/internal/gen/payments/v1"
	"github.com/mercato-dev/mercato/internal/payments/app"
	"github.com/mercato-dev/mercato/internal/payments/domain"
)

// PublicMethods are the methods an anonymous caller may use: none. Every
// call needs a valid access token; the use case decides the role.
var PublicMethods []string

// GRPCServer implements paymentsv1.PaymentsServiceServer over the use
// cases. Authentication happens in the interceptor; authorisation in app.
type GRPCServer struct {
	paymentsv1.UnimplementedPaymentsServiceServer
	payments *app.Payments
}

// NewGRPCServer returns the gRPC server for p.
func NewGRPCServer(p *app.Payments) *GRPCServer { return &GRPCServer{payments: p} }

// Authorize implements paymentsv1.PaymentsServiceServer.
func (s *GRPCServer) Authorize(ctx context.Context, req *paymentsv1.AuthorizeRequest) (*paymentsv1.Payment, error) {
	p, err := s.payments.Authorize(ctx, domain.AuthorizeInput{
		IdempotencyKey: req.GetIdempotencyKey(), OrderID: req.GetOrderId(), UserID: req.GetUserId(),
		AmountCents: int64(req.GetAmountCents()), Currency: req.GetCurrency(), PaymentToken: req.GetPaymentToken(),
	})
	return reply(p, err)
}

// Capture implements paymentsv1.PaymentsServiceServer.
func (s *GRPCServer) Capture(ctx context.Context, req *paymentsv1.CaptureRequest) (*paymentsv1.Payment, error) {
	p, err := s.payments.Capture(ctx, req.GetPaymentId())
	return reply(p, err)
}

// Void implements paymentsv1.PaymentsServiceServer.
func (s *GRPCServer) Void(ctx context.Context, req *paymentsv1.VoidRequest) (*paymentsv1.Payment, error) {
	p, err := s.payments.Void(ctx, req.GetPaymentId())
	return reply(p, err)
}

// Refund implements paymentsv1.PaymentsServiceServer.
func (s *GRPCServer) Refund(ctx context.Context, req *paymentsv1.RefundRequest) (*paymentsv1.Payment, error) {
	p, err := s.payments.Refund(ctx, req.GetPaymentId())
	return reply(p, err)
}

// ListPayments implements paymentsv1.PaymentsServiceServer.
func (s *GRPCServer) ListPayments(ctx context.Context, req *paymentsv1.ListPaymentsRequest) (*paymentsv1.ListPaymentsResponse, error) {
	ps, err := s.payments.ListPayments(ctx, req.GetOrderId())
	if err != nil {
		return nil, err
	}
	out := make([]*paymentsv1.Payment, len(ps))
	for i, p := range ps {
		out[i] = toProto(p)
	}
	return &paymentsv1.ListPaymentsResponse{Payments: out}, nil
}

// CheckPaymentToken implements paymentsv1.PaymentsServiceServer.
func (s *GRPCServer) CheckPaymentToken(ctx context.Context, req *paymentsv1.CheckPaymentTokenRequest) (*paymentsv1.PaymentMethod, error) {
	m, err := s.payments.CheckPaymentToken(ctx, req.GetPaymentToken())
	if err != nil {
		return nil, err
	}
	return &paymentsv1.PaymentMethod{CardBrand: m.CardBrand}, nil
}

func reply(p domain.Payment, err error) (*paymentsv1.Payment, error) {
	if err != nil {
		return nil, err
	}
	return toProto(p), nil
}

// toProto maps a payment to the wire. Amounts are at most
// domain.MaxAmountCents, so they fit an int32.
func toProto(p domain.Payment) *paymentsv1.Payment {
	return &paymentsv1.Payment{
		Id: p.ID, OrderId: p.OrderID, UserId: p.UserID, AmountCents: int32(p.AmountCents),
		Currency: p.Currency, Status: string(p.Status), DeclineCode: p.DeclineCode, CardBrand: p.CardBrand,
		CreatedAt: timestamppb.New(p.CreatedAt), UpdatedAt: timestamppb.New(p.UpdatedAt),
	}
}

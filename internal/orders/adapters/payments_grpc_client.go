package adapters

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	paymentsv1 "github.com/mercato-dev/mercato/internal/gen/payments/v1"
	"github.com/mercato-dev/mercato/internal/orders/app"
)

// PaymentsGRPCClient is the app.Payments over the payments' gRPC API. The
// connection is expected to carry the orders service's own token.
type PaymentsGRPCClient struct {
	c paymentsv1.PaymentsServiceClient
}

var _ app.Payments = (*PaymentsGRPCClient)(nil)

// NewPaymentsGRPCClient returns the client over c.
func NewPaymentsGRPCClient(c paymentsv1.PaymentsServiceClient) *PaymentsGRPCClient {
	return &PaymentsGRPCClient{c: c}
}

// Authorize implements app.Payments.
func (c *PaymentsGRPCClient) Authorize(ctx context.Context, a app.Authorization) (app.Payment, error) {
	p, err := c.c.Authorize(ctx, &paymentsv1.AuthorizeRequest{
		IdempotencyKey: a.IdempotencyKey, OrderId: a.OrderID, UserId: a.UserID,
		AmountCents: int32(a.AmountCents), Currency: a.Currency, PaymentToken: a.PaymentToken,
	})
	if err != nil {
		return app.Payment{}, classifyToken("authorize payment", err)
	}
	return app.Payment{ID: p.GetId(), Status: paymentStatus(p.GetStatus()), DeclineCode: p.GetDeclineCode()}, nil
}

// paymentStatuses are payments' statuses on the wire.
var paymentStatuses = map[string]app.PaymentStatus{
	"authorized": app.PaymentAuthorized,
	"declined":   app.PaymentDeclined,
	"captured":   app.PaymentCaptured,
	"voided":     app.PaymentVoided,
	"refunded":   app.PaymentRefunded,
}

// paymentStatus maps payments' status to the app's; a status it does not
// know is app.PaymentStatusUnknown.
func paymentStatus(s string) app.PaymentStatus {
	return paymentStatuses[s] // the zero value is PaymentStatusUnknown
}

// CheckPaymentToken implements app.PaymentMethods.
func (c *PaymentsGRPCClient) CheckPaymentToken(ctx context.Context, token string) error {
	_, err := c.c.CheckPaymentToken(ctx, &paymentsv1.CheckPaymentTokenRequest{PaymentToken: token})
	return classifyToken("check payment token", err)
}

// classifyToken is classify, telling apart payments' refusal of the card
// token (cause unknown_payment_token).
func classifyToken(op string, err error) error {
	if status.Code(err) == codes.InvalidArgument && detailsOf(err).cause == causeUnknownPaymentToken {
		return fmt.Errorf("%s: %w: %w", op, app.ErrPaymentTokenRejected, err)
	}
	return classify(op, err)
}

// Capture implements app.Payments.
func (c *PaymentsGRPCClient) Capture(ctx context.Context, paymentID string) error {
	_, err := c.c.Capture(ctx, &paymentsv1.CaptureRequest{PaymentId: paymentID})
	return classify("capture payment", err)
}

// Void implements app.Payments.
func (c *PaymentsGRPCClient) Void(ctx context.Context, paymentID string) error {
	_, err := c.c.Void(ctx, &paymentsv1.VoidRequest{PaymentId: paymentID})
	return classifyChange("void payment", err)
}

// Refund implements app.Payments.
func (c *PaymentsGRPCClient) Refund(ctx context.Context, paymentID string) error {
	_, err := c.c.Refund(ctx, &paymentsv1.RefundRequest{PaymentId: paymentID})
	return classifyChange("refund payment", err)
}

// classifyChange is classify, telling apart payments' refusal because a
// capture is in progress (cause capture_in_progress): only finishing that
// capture unblocks the payment.
func classifyChange(op string, err error) error {
	if err != nil && detailsOf(err).cause == causeCaptureInProgress {
		return fmt.Errorf("%s: %w: %w", op, app.ErrCaptureInProgress, err)
	}
	return classify(op, err)
}

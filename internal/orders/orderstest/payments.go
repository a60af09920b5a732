package orderstest

import (
	"context"
	"sort"
	"strings"
	"sync"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	paymentsv1 "github.com/mercato-dev/mercato/internal/gen/payments/v1"
	"github.com/mercato-dev/mercato/internal/platform/apperr"
)

// Test card tokens, as the real provider knows them. Any other token is
// unknown (InvalidArgument).
var cardTokens = map[string]string{ // token → decline code ("" authorizes)
	"tok_visa":              "",
	"tok_mastercard":        "",
	"tok_chargeDeclined":    "card_declined",
	"tok_insufficientFunds": "insufficient_funds",
}

// Payments is an in-memory payments service: authorizations keyed by
// idempotency key, at most one capture per order.
type Payments struct {
	paymentsv1.UnimplementedPaymentsServiceServer
	Faults

	mu       sync.Mutex
	requests map[string]authorizeRequest // idempotency key → the request it was first used for
	byKey    map[string]*PaymentRecord
	byID     map[string]*PaymentRecord
	captures map[string]int  // order id → captures performed
	stall    map[string]int  // method → calls left to stall
	revoked  map[string]bool // card tokens no longer known
}

// authorizeRequest is what an idempotency key must be repeated with.
type authorizeRequest struct {
	orderID, userID, currency, token string
	amountCents                      int32
}

// PaymentRecord is one payment as the fake holds it.
type PaymentRecord struct {
	ID          string
	OrderID     string
	UserID      string
	AmountCents int32
	Currency    string
	Status      string
	DeclineCode string
	// PendingOp is a capture, void or refund that was begun and whose
	// outcome is unknown; it blocks the others until it is retried.
	PendingOp string
}

// NewPayments returns an empty payments service.
func NewPayments() *Payments {
	return &Payments{
		requests: map[string]authorizeRequest{}, byKey: map[string]*PaymentRecord{}, byID: map[string]*PaymentRecord{},
		captures: map[string]int{},
	}
}

// Payments returns every payment of the order.
func (p *Payments) Payments(orderID string) []PaymentRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []PaymentRecord
	for _, r := range p.byID {
		if r.OrderID == orderID {
			out = append(out, *r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Captures returns how many captures were performed for the order.
func (p *Payments) Captures(orderID string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.captures[orderID]
}

// PaymentsSnapshot is the whole state, by order id.
type PaymentsSnapshot struct {
	Statuses map[string][]string
	Captures map[string]int
}

// Snapshot returns every payment status and capture count.
func (p *Payments) Snapshot() PaymentsSnapshot {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := PaymentsSnapshot{Statuses: map[string][]string{}, Captures: map[string]int{}}
	for _, r := range p.byID {
		s.Statuses[r.OrderID] = append(s.Statuses[r.OrderID], r.Status)
	}
	for _, st := range s.Statuses {
		sort.Strings(st)
	}
	for id, n := range p.captures {
		s.Captures[id] = n
	}
	return s
}

// StallNext makes the next n calls of method ("Capture", "Void" or
// "Refund") begin the operation and answer DeadlineExceeded, leaving it in
// progress as the real service does when the provider's answer is lost:
// other operations on the payment are then refused until it is retried.
func (p *Payments) StallNext(method string, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stall == nil {
		p.stall = map[string]int{}
	}
	p.stall[method] += n
}

// Revoke makes token unknown from now on, as a card the provider stops
// knowing (cancelled, reported stolen) between a check and a charge.
func (p *Payments) Revoke(token string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.revoked == nil {
		p.revoked = map[string]bool{}
	}
	p.revoked[token] = true
}

// known reports whether token is a card the fake knows, and its decline
// code ("" authorizes). p.mu must be held.
func (p *Payments) known(token string) (declineCode string, ok bool) {
	code, ok := cardTokens[token]
	return code, ok && !p.revoked[token]
}

func (r *PaymentRecord) proto() *paymentsv1.Payment {
	return &paymentsv1.Payment{
		Id: r.ID, OrderId: r.OrderID, UserId: r.UserID, AmountCents: r.AmountCents, Currency: r.Currency,
		Status: r.Status, DeclineCode: r.DeclineCode,
	}
}

func errUnknownToken() error {
	return invalid("unknown payment token", apperr.WithCause("unknown_payment_token"))
}

// Authorize implements paymentsv1.PaymentsServiceServer.
func (p *Payments) Authorize(ctx context.Context, req *paymentsv1.AuthorizeRequest) (*paymentsv1.Payment, error) {
	if err := requireService(ctx); err != nil {
		return nil, err
	}
	after, before := p.enter(ctx, "Authorize")
	if before != nil {
		return nil, before
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	asked := authorizeRequest{
		orderID: req.GetOrderId(), userID: req.GetUserId(), currency: req.GetCurrency(), token: req.GetPaymentToken(),
		amountCents: req.GetAmountCents(),
	}
	if r, ok := p.byKey[req.GetIdempotencyKey()]; ok {
		if p.requests[req.GetIdempotencyKey()] != asked {
			return nil, refuse(apperr.Unprocessable, "idempotency key reused with a different request")
		}
		return r.proto(), after()
	}
	code, known := p.known(req.GetPaymentToken())
	if !known {
		return nil, errUnknownToken()
	}
	if req.GetIdempotencyKey() == "" || req.GetAmountCents() <= 0 {
		return nil, invalid("idempotency_key and a positive amount are required")
	}
	r := &PaymentRecord{
		ID: uuid.NewString(), OrderID: req.GetOrderId(), UserID: req.GetUserId(),
		AmountCents: req.GetAmountCents(), Currency: req.GetCurrency(), Status: "authorized",
	}
	if code != "" {
		r.Status, r.DeclineCode = "declined", code
	}
	p.byKey[req.GetIdempotencyKey()] = r
	p.requests[req.GetIdempotencyKey()] = asked
	p.byID[r.ID] = r
	return r.proto(), after()
}

// CheckPaymentToken implements paymentsv1.PaymentsServiceServer: a lookup
// of the test card tokens that holds nothing.
func (p *Payments) CheckPaymentToken(ctx context.Context, req *paymentsv1.CheckPaymentTokenRequest) (*paymentsv1.PaymentMethod, error) {
	if err := requireService(ctx); err != nil {
		return nil, err
	}
	after, before := p.enter(ctx, "CheckPaymentToken")
	if before != nil {
		return nil, before
	}
	p.mu.Lock()
	_, known := p.known(req.GetPaymentToken())
	p.mu.Unlock()
	if !known {
		return nil, errUnknownToken()
	}
	brand := "visa"
	if req.GetPaymentToken() == "tok_mastercard" {
		brand = "mastercard"
	}
	return &paymentsv1.PaymentMethod{CardBrand: brand}, after()
}

func (p *Payments) transition(ctx context.Context, method, id, from, to string) (*paymentsv1.Payment, error) {
	if err := requireService(ctx); err != nil {
		return nil, err
	}
	after, before := p.enter(ctx, method)
	if before != nil {
		return nil, before
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	op := strings.ToLower(method)
	r, ok := p.byID[id]
	switch {
	case !ok:
		return nil, notFound("payment not found")
	case r.PendingOp != "" && r.PendingOp != op:
		return nil, conflict("payment has a "+r.PendingOp+" in progress; retry the "+r.PendingOp,
			apperr.Retryable(), apperr.WithCause(r.PendingOp+"_in_progress"))
	case r.Status == to:
	case r.Status == from:
		if p.stall[method] > 0 {
			p.stall[method]--
			r.PendingOp = op
			return nil, status.Error(codes.DeadlineExceeded, "provider did not answer in time")
		}
		if to == "captured" {
			if p.captures[r.OrderID] > 0 {
				return nil, conflict("order already has a captured payment")
			}
			p.captures[r.OrderID]++
		}
		r.Status, r.PendingOp = to, ""
	default:
		return nil, conflict("payment is " + r.Status)
	}
	return r.proto(), after()
}

// Capture implements paymentsv1.PaymentsServiceServer.
func (p *Payments) Capture(ctx context.Context, req *paymentsv1.CaptureRequest) (*paymentsv1.Payment, error) {
	return p.transition(ctx, "Capture", req.GetPaymentId(), "authorized", "captured")
}

// Void implements paymentsv1.PaymentsServiceServer.
func (p *Payments) Void(ctx context.Context, req *paymentsv1.VoidRequest) (*paymentsv1.Payment, error) {
	return p.transition(ctx, "Void", req.GetPaymentId(), "authorized", "voided")
}

// Refund implements paymentsv1.PaymentsServiceServer.
func (p *Payments) Refund(ctx context.Context, req *paymentsv1.RefundRequest) (*paymentsv1.Payment, error) {
	return p.transition(ctx, "Refund", req.GetPaymentId(), "captured", "refunded")
}

// Expire makes an authorization unusable, as a provider does when it
// lapses: capturing or voiding it is then refused.
func (p *Payments) Expire(paymentID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r, ok := p.byID[paymentID]; ok && r.Status == "authorized" {
		r.Status = "expired"
	}
}

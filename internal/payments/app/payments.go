// Package app holds the payments service's use cases: who may do what, and
// in which order the repository and the card provider are consulted. It
// knows no transport and no SQL.
//
// # Provider calls and the database
//
// A provider call can take long (network, the fault knobs), so it never
// runs inside a database transaction. Every change is three steps:
//
//  1. record the intent durably: Authorize inserts a pending payment under
//     its idempotency key; Capture, Void and Refund mark the operation as in
//     progress on the payment (which also claims the order's single capture);
//  2. call the provider, with an idempotency key derived from the request
//     (the Authorize key, or the operation and payment id);
//  3. record the outcome and its event in one transaction, conditional on
//     the intent still being open, so that of two racing attempts exactly
//     one records it.
//
// If the process dies between 2 and 3, or the provider call fails with an
// unknown outcome, the intent stays open. The caller retries with the same
// key (the orders saga always does); step 2 then reaches the provider with
// the same idempotency key, and the provider answers with the outcome of
// the first call instead of charging again, as Stripe does. Until then a
// pending authorization is invisible, and an operation in progress blocks
// every other operation on that payment (Conflict): a capture that was
// begun must be finished by retrying it, never compensated by a void that
// could race it at the provider.
package app

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/mercato-dev/mercato/internal/payments/domain"
	"github.com/mercato-dev/mercato/internal/platform/apperr"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/events"
)

// changeAttempts bounds how often a change re-reads a payment that another
// request changed between the read and the claim.
const changeAttempts = 3

// recordTimeout bounds recording a provider's answer. The recording does
// not stop when the caller gives up: the provider has acted, and an
// unrecorded outcome would only wait for a retry.
const recordTimeout = 10 * time.Second

// PaymentRepository stores payments. Implementations are safe for
// concurrent use.
// Every status change records its event in the same transaction, so the
// event exists if and only if the change committed.
type PaymentRepository interface {
	// BeginAuthorization stores p, a pending payment, unless a payment with
	// p.IdempotencyKey exists already. It returns the stored payment and
	// whether that is p.
	BeginAuthorization(ctx context.Context, p domain.Payment) (stored domain.Payment, created bool, err error)
	// CompleteAuthorization records the outcome in p (status authorized or
	// declined, brand, decline code, provider reference, UpdatedAt) on the
	// payment p.ID, with ev, if it is still pending. Otherwise nothing is
	// written, recorded is false, and stored is the payment as it is.
	CompleteAuthorization(ctx context.Context, p domain.Payment, ev events.Event) (stored domain.Payment, recorded bool, err error)
	// AbandonAuthorization deletes payment id if it is still pending.
	AbandonAuthorization(ctx context.Context, id string) error
	// Get returns payment id in any status, or domain.ErrNotFound.
	Get(ctx context.Context, id string) (domain.Payment, error)
	// BeginOperation marks op as in progress on payment id if its status is
	// still op.Source() and no operation is in progress; claimed is false
	// when it no longer is. For a capture it returns domain.ErrOrderCaptured
	// when another payment of the order is captured, refunded or being
	// captured.
	BeginOperation(ctx context.Context, id string, op domain.Operation) (claimed bool, err error)
	// CompleteOperation moves payment p.ID, at op.Source() with op in
	// progress, to p.Status at p.UpdatedAt and ends op, with ev. recorded is
	// false, and nothing written, when op was no longer in progress.
	CompleteOperation(ctx context.Context, p domain.Payment, op domain.Operation, ev events.Event) (recorded bool, err error)
	// ListByOrder returns the order's payments that are not pending, oldest
	// first; only userID's when userID is not empty.
	ListByOrder(ctx context.Context, orderID, userID string) ([]domain.Payment, error)
}

// Provider is the card processor. Implementations are safe for concurrent
// use and idempotent by key: a call repeating an earlier call's key gets
// that call's outcome and changes nothing at the provider.
//
// An error of kind apperr.Invalid means the provider refused the request
// and holds nothing for it. Any other error leaves the outcome unknown: the
// call may or may not have taken effect, and only a retry with the same key
// tells.
type Provider interface {
	// Authorize places a hold. A decline is an outcome, not an error.
	Authorize(ctx context.Context, req ProviderAuthorization) (ProviderResult, error)
	// Capture collects the held amount of the authorization reference.
	Capture(ctx context.Context, reference, idempotencyKey string) error
	// Void releases the hold of the authorization reference.
	Void(ctx context.Context, reference, idempotencyKey string) error
	// Refund returns the captured amount of the authorization reference.
	Refund(ctx context.Context, reference, idempotencyKey string) error
	// CheckToken returns the card behind token, holding nothing: a lookup
	// such as Stripe's retrieval of a payment method. A token the provider
	// does not know is an error of kind apperr.Invalid.
	CheckToken(ctx context.Context, token string) (ProviderPaymentMethod, error)
}

// ProviderPaymentMethod is the provider's answer to a token lookup.
type ProviderPaymentMethod struct {
	CardBrand string
}

// ProviderAuthorization is a request to hold an amount on a card.
type ProviderAuthorization struct {
	IdempotencyKey string
	PaymentToken   string
	AmountCents    int64
	Currency       string
}

// ProviderResult is the provider's answer to an authorization.
type ProviderResult struct {
	Approved bool
	// Reference is the provider's id of the authorization (declined ones
	// too).
	Reference string
	CardBrand string
	// DeclineCode says why a declined authorization was declined.
	DeclineCode string
}

// TransitionRecorder counts status changes (metrics).
type TransitionRecorder interface {
	Transition(from, to domain.Status)
}

// Payments runs the payments use cases. It is safe for concurrent use.
type Payments struct {
	repo     PaymentRepository
	provider Provider
	recorder TransitionRecorder
	now      func() time.Time
}

// NewPayments returns the use cases over repo and provider; recorder may be
// nil.
func NewPayments(repo PaymentRepository, provider Provider, recorder TransitionRecorder) *Payments {
	if recorder == nil {
		recorder = noRecorder{}
	}
	return &Payments{
		repo: repo, provider: provider, recorder: recorder,
		// Microseconds are what PostgreSQL keeps, so what a write returns
		// equals what a later read returns.
		now: func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) },
	}
}

// Authorize holds in.AmountCents on the card behind in.PaymentToken, for
// services and admins. A decline is not an error: the payment is returned
// with status declined. The same idempotency key with the same request
// returns the stored payment without asking the provider again; with a
// different request it is domain.ErrIdempotencyKeyReused. An unknown token
// is domain.ErrUnknownPaymentToken and leaves nothing stored. A provider
// failure (domain.ErrProviderUnavailable, a cancelled context) leaves the
// authorization pending: retry with the same key.
func (s *Payments) Authorize(ctx context.Context, in domain.AuthorizeInput) (domain.Payment, error) {
	if _, err := auth.RequireService(ctx); err != nil {
		return domain.Payment{}, err
	}
	in, err := in.Normalize()
	if err != nil {
		return domain.Payment{}, err
	}
	hash := in.RequestHash()
	id, err := uuid.NewV7()
	if err != nil {
		return domain.Payment{}, fmt.Errorf("generate payment id: %w", err)
	}
	now := s.now()
	stored, _, err := s.repo.BeginAuthorization(ctx, domain.Payment{
		ID: id.String(), OrderID: in.OrderID, UserID: in.UserID, AmountCents: in.AmountCents,
		Currency: in.Currency, Status: domain.StatusPending, IdempotencyKey: in.IdempotencyKey,
		RequestHash: hash, CreatedAt: now, UpdatedAt: now,
	})
	if err != nil {
		return domain.Payment{}, fmt.Errorf("begin authorization: %w", err)
	}
	if stored.RequestHash != hash {
		return domain.Payment{}, domain.ErrIdempotencyKeyReused
	}
	if stored.Visible() {
		return stored, nil
	}

	// Pending: just created, or an earlier attempt with this key did not
	// record the provider's answer. Asking again is safe either way.
	res, err := s.provider.Authorize(ctx, ProviderAuthorization{
		IdempotencyKey: authorizeKey(in.IdempotencyKey), PaymentToken: in.PaymentToken,
		AmountCents: in.AmountCents, Currency: in.Currency,
	})
	if err != nil {
		if apperr.KindOf(err) == apperr.Invalid {
			// Refused outright: nothing is held, so nothing is kept.
			abandonCtx, cancel := recordContext(ctx)
			defer cancel()
			if delErr := s.repo.AbandonAuthorization(abandonCtx, stored.ID); delErr != nil {
				return domain.Payment{}, fmt.Errorf("abandon authorization: %w", delErr)
			}
		}
		return domain.Payment{}, fmt.Errorf("authorize payment: %w", err)
	}

	p := stored
	p.Status, p.CardBrand, p.ProviderRef = domain.StatusAuthorized, res.CardBrand, res.Reference
	if !res.Approved {
		p.Status, p.DeclineCode = domain.StatusDeclined, res.DeclineCode
	}
	p.UpdatedAt = s.now()
	ev, err := paymentEvent(p)
	if err != nil {
		return domain.Payment{}, err
	}
	recordCtx, cancel := recordContext(ctx)
	defer cancel()
	current, recorded, err := s.repo.CompleteAuthorization(recordCtx, p, ev)
	if err != nil {
		return domain.Payment{}, fmt.Errorf("record authorization: %w", err)
	}
	if !recorded {
		return current, nil
	}
	s.recorder.Transition(domain.StatusPending, p.Status)
	return p, nil
}

// Capture collects an authorized payment, for services and admins. It is
// idempotent: capturing a captured payment returns it unchanged. An order
// has at most one captured payment: capturing another is
// domain.ErrOrderCaptured. Other statuses are Conflicts.
func (s *Payments) Capture(ctx context.Context, paymentID string) (domain.Payment, error) {
	return s.change(ctx, paymentID, domain.OpCapture)
}

// Void releases an authorized payment's hold, for services and admins. It
// is idempotent: voiding a voided payment returns it unchanged. A captured
// payment is domain.ErrCapturedRefund.
func (s *Payments) Void(ctx context.Context, paymentID string) (domain.Payment, error) {
	return s.change(ctx, paymentID, domain.OpVoid)
}

// Refund returns a captured payment in full, for services and admins. It
// is idempotent: refunding a refunded payment returns it unchanged. A
// payment that is only authorized is domain.ErrNotCapturedVoid.
func (s *Payments) Refund(ctx context.Context, paymentID string) (domain.Payment, error) {
	return s.change(ctx, paymentID, domain.OpRefund)
}

func (s *Payments) change(ctx context.Context, paymentID string, op domain.Operation) (domain.Payment, error) {
	if _, err := auth.RequireService(ctx); err != nil {
		return domain.Payment{}, err
	}
	id, err := domain.CanonicalID(paymentID, domain.ErrPaymentIDRequired, domain.ErrNotFound)
	if err != nil {
		return domain.Payment{}, err
	}
	for range changeAttempts {
		p, err := s.repo.Get(ctx, id)
		if err != nil {
			return domain.Payment{}, fmt.Errorf("get payment: %w", err)
		}
		done, err := p.Check(op)
		if err != nil {
			return domain.Payment{}, err
		}
		if done {
			return p, nil
		}
		if p.PendingOp != op {
			claimed, err := s.repo.BeginOperation(ctx, id, op)
			if err != nil {
				return domain.Payment{}, fmt.Errorf("begin %s: %w", op, err)
			}
			if !claimed {
				continue // changed since read: decide again on what it is now
			}
		}
		// Also when op was already in progress: that attempt failed, died or
		// is still running, and the provider answers a repeat of its key
		// with the first outcome.
		if err := s.callProvider(ctx, op, p); err != nil {
			return domain.Payment{}, fmt.Errorf("%s payment: %w", op, err)
		}
		from := p.Status
		p.Status, p.PendingOp, p.UpdatedAt = op.Target(), "", s.now()
		ev, err := paymentEvent(p)
		if err != nil {
			return domain.Payment{}, err
		}
		recorded, err := s.completeOperation(ctx, p, op, ev)
		if err != nil {
			return domain.Payment{}, fmt.Errorf("record %s: %w", op, err)
		}
		if recorded {
			s.recorder.Transition(from, p.Status)
			return p, nil
		}
		// A concurrent attempt recorded it first; the next read returns it.
	}
	return domain.Payment{}, domain.ErrConcurrentChange
}

func (s *Payments) completeOperation(ctx context.Context, p domain.Payment, op domain.Operation, ev events.Event) (bool, error) {
	ctx, cancel := recordContext(ctx)
	defer cancel()
	return s.repo.CompleteOperation(ctx, p, op, ev)
}

// recordContext is ctx for recording what the provider did: it keeps ctx's
// values (trace, request id) but not its cancellation.
func recordContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
}

func (s *Payments) callProvider(ctx context.Context, op domain.Operation, p domain.Payment) error {
	key := string(op) + "/" + p.ID
	switch op {
	case domain.OpCapture:
		return s.provider.Capture(ctx, p.ProviderRef, key)
	case domain.OpVoid:
		return s.provider.Void(ctx, p.ProviderRef, key)
	default:
		return s.provider.Refund(ctx, p.ProviderRef, key)
	}
}

// CheckPaymentToken returns what the provider knows of the card behind
// token, for services and admins. It holds nothing and stores nothing, so
// orders can ask it before accepting an order and refuse a token the
// provider does not know at once instead of failing the checkout later.
// An unknown token is domain.ErrUnknownPaymentToken; a malformed one is
// domain.ErrPaymentTokenRequired or domain.ErrPaymentTokenInvalid.
func (s *Payments) CheckPaymentToken(ctx context.Context, token string) (domain.PaymentMethod, error) {
	if _, err := auth.RequireService(ctx); err != nil {
		return domain.PaymentMethod{}, err
	}
	if err := domain.ValidatePaymentToken(token); err != nil {
		return domain.PaymentMethod{}, err
	}
	m, err := s.provider.CheckToken(ctx, token)
	if err != nil {
		if apperr.KindOf(err) == apperr.Invalid {
			return domain.PaymentMethod{}, domain.ErrUnknownPaymentToken
		}
		return domain.PaymentMethod{}, fmt.Errorf("check payment token: %w", err)
	}
	return domain.PaymentMethod{CardBrand: m.CardBrand}, nil
}

// ListPayments returns the payments of an order, oldest first: all of them
// to services and admins, a customer's own to a customer. Finding none
// visible to the caller is domain.ErrPaymentsNotFound, whether or not the
// order exists or has someone else's payments.
func (s *Payments) ListPayments(ctx context.Context, orderID string) ([]domain.Payment, error) {
	principal, err := auth.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	id, err := domain.CanonicalID(orderID, domain.ErrOrderIDRequired, domain.ErrOrderIDInvalid)
	if err != nil {
		return nil, err
	}
	owner := principal.UserID
	if principal.IsAdmin() || principal.IsService() {
		owner = ""
	} else if owner == "" {
		return nil, domain.ErrPaymentsNotFound
	}
	ps, err := s.repo.ListByOrder(ctx, id, owner)
	if err != nil {
		return nil, fmt.Errorf("list payments: %w", err)
	}
	if len(ps) == 0 {
		return nil, domain.ErrPaymentsNotFound
	}
	return ps, nil
}

// authorizeKey namespaces Authorize keys at the provider apart from the
// keys of captures, voids and refunds ("capture/<payment id>").
func authorizeKey(key string) string { return "authorize/" + key }

func paymentEvent(p domain.Payment) (events.Event, error) {
	payload, err := domain.EventPayload(p)
	if err != nil {
		return events.Event{}, err
	}
	return events.Event{ID: domain.EventID(p.ID, p.Status), Subject: domain.Subject(p.Status), Payload: payload}, nil
}

type noRecorder struct{}

func (noRecorder) Transition(domain.Status, domain.Status) {}

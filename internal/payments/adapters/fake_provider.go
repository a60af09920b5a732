package adapters

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mercato-dev/mercato/internal/payments/app"
	"github.com/mercato-dev/mercato/internal/payments/domain"
)

// The test tokens the fake provider knows, after the familiar test-card
// convention.
const (
	TokenVisa              = "tok_visa"
	TokenMastercard        = "tok_mastercard"
	TokenChargeDeclined    = "tok_chargeDeclined"
	TokenInsufficientFunds = "tok_insufficientFunds"
)

// Decline codes the fake provider answers with.
const (
	DeclineCardDeclined      = "card_declined"
	DeclineInsufficientFunds = "insufficient_funds"
)

// Provider operations, as counted by FakeProvider.Calls and labelled in
// the metrics.
const (
	OpAuthorize = "authorize"
	OpCapture   = "capture"
	OpVoid      = "void"
	OpRefund    = "refund"
	// OpCheckToken is a token lookup (CheckToken).
	OpCheckToken = "check_token"
)

// fakeRefPrefix starts every reference the fake provider hands out.
const fakeRefPrefix = "fake_auth_"

// errUnknownReference is a capture, void or refund of a reference the fake
// provider never handed out: a bug, not a client error.
var errUnknownReference = errors.New("unknown provider reference")

type tokenOutcome struct {
	brand       string
	declineCode string
}

var tokenOutcomes = map[string]tokenOutcome{
	TokenVisa:              {brand: "visa"},
	TokenMastercard:        {brand: "mastercard"},
	TokenChargeDeclined:    {brand: "visa", declineCode: DeclineCardDeclined},
	TokenInsufficientFunds: {brand: "visa", declineCode: DeclineInsufficientFunds},
}

// FakeProviderConfig are the fake provider's fault knobs.
type FakeProviderConfig struct {
	// Latency is added to every call; a call whose context ends first
	// returns the context's error without taking effect.
	Latency time.Duration
	// FailureRate is the share of calls, in [0, 1], that fail with
	// domain.ErrProviderUnavailable without taking effect.
	FailureRate float64
	// Seed seeds the failure draws, so a run with a given seed fails the
	// same calls (in call order) every time.
	Seed uint64
}

// FakeProvider is an in-process app.Provider with Stripe-style test tokens:
// tok_visa and tok_mastercard are approved, tok_chargeDeclined and
// tok_insufficientFunds declined, anything else refused as
// domain.ErrUnknownPaymentToken.
//
// Like a real provider it is idempotent by key: an authorization repeating
// an earlier one's key gets the earlier answer and places no second hold,
// and the same key with different parameters is refused. References are
// derived from the key, so even a restarted fake (which forgets its
// memory) answers a repeated key with the same reference. Captures, voids
// and refunds only simulate the call: the payment's status is the
// database's to keep.
//
// It is safe for concurrent use.
type FakeProvider struct {
	latency     time.Duration
	failureRate float64
	down        atomic.Bool

	mu             sync.Mutex
	rng            *rand.Rand
	authorizations map[string]fakeAuthorization // by idempotency key
	calls          map[string]int               // by operation
}

type fakeAuthorization struct {
	request app.ProviderAuthorization
	result  app.ProviderResult
}

var _ app.Provider = (*FakeProvider)(nil)

// NewFakeProvider returns a fake provider with the given fault knobs,
// which must be valid (latency not negative, rate within [0, 1]).
func NewFakeProvider(cfg FakeProviderConfig) *FakeProvider {
	return &FakeProvider{
		latency:        cfg.Latency,
		failureRate:    cfg.FailureRate,
		rng:            rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		authorizations: make(map[string]fakeAuthorization),
		calls:          make(map[string]int),
	}
}

// SetDown makes every following call fail with
// domain.ErrProviderUnavailable (true) or behave normally again (false):
// an outage switch for tests.
func (f *FakeProvider) SetDown(down bool) { f.down.Store(down) }

// Calls returns how many calls of operation (OpAuthorize, OpCapture,
// OpVoid, OpRefund, OpCheckToken) the provider received, failed ones
// included.
func (f *FakeProvider) Calls(operation string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[operation]
}

// Holds returns how many distinct authorizations the provider placed:
// what a card holder would see on their statement.
func (f *FakeProvider) Holds() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.authorizations)
}

// Authorize implements app.Provider.
func (f *FakeProvider) Authorize(ctx context.Context, req app.ProviderAuthorization) (app.ProviderResult, error) {
	if err := f.begin(ctx, OpAuthorize); err != nil {
		return app.ProviderResult{}, err
	}
	outcome, ok := tokenOutcomes[req.PaymentToken]
	if !ok {
		return app.ProviderResult{}, domain.ErrUnknownPaymentToken
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if prev, ok := f.authorizations[req.IdempotencyKey]; ok {
		if prev.request != req {
			return app.ProviderResult{}, domain.ErrIdempotencyKeyReused
		}
		return prev.result, nil
	}
	sum := sha256.Sum256([]byte(req.IdempotencyKey))
	res := app.ProviderResult{
		Approved:    outcome.declineCode == "",
		Reference:   fakeRefPrefix + hex.EncodeToString(sum[:12]),
		CardBrand:   outcome.brand,
		DeclineCode: outcome.declineCode,
	}
	f.authorizations[req.IdempotencyKey] = fakeAuthorization{request: req, result: res}
	return res, nil
}

// CheckToken implements app.Provider. It is a lookup in the fake's table
// of test tokens, answered at once: the fault knobs (latency, failure
// rate, SetDown) simulate the provider's charging API and do not apply to
// it, so that a slow or failing provider still lets orders be accepted
// and their checkout wait for it. A cancelled context is still honoured.
func (f *FakeProvider) CheckToken(ctx context.Context, token string) (app.ProviderPaymentMethod, error) {
	f.mu.Lock()
	f.calls[OpCheckToken]++
	f.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return app.ProviderPaymentMethod{}, fmt.Errorf("provider %s: %w", OpCheckToken, err)
	}
	outcome, ok := tokenOutcomes[token]
	if !ok {
		return app.ProviderPaymentMethod{}, domain.ErrUnknownPaymentToken
	}
	return app.ProviderPaymentMethod{CardBrand: outcome.brand}, nil
}

// Capture implements app.Provider.
func (f *FakeProvider) Capture(ctx context.Context, reference, _ string) error {
	return f.settle(ctx, OpCapture, reference)
}

// Void implements app.Provider.
func (f *FakeProvider) Void(ctx context.Context, reference, _ string) error {
	return f.settle(ctx, OpVoid, reference)
}

// Refund implements app.Provider.
func (f *FakeProvider) Refund(ctx context.Context, reference, _ string) error {
	return f.settle(ctx, OpRefund, reference)
}

func (f *FakeProvider) settle(ctx context.Context, op, reference string) error {
	if err := f.begin(ctx, op); err != nil {
		return err
	}
	if !strings.HasPrefix(reference, fakeRefPrefix) {
		return fmt.Errorf("%s %q: %w", op, reference, errUnknownReference)
	}
	return nil
}

// begin counts the call, waits out the latency and applies the failure
// knobs; a nil error means the call may take effect.
func (f *FakeProvider) begin(ctx context.Context, op string) error {
	f.mu.Lock()
	f.calls[op]++
	fail := f.failureRate > 0 && f.rng.Float64() < f.failureRate
	f.mu.Unlock()

	if f.latency > 0 {
		timer := time.NewTimer(f.latency)
		defer timer.Stop()
		select {
		case <-ctx.Done():
			return fmt.Errorf("provider %s: %w", op, ctx.Err())
		case <-timer.C:
		}
	} else if err := ctx.Err(); err != nil {
		return fmt.Errorf("provider %s: %w", op, err)
	}
	if fail || f.down.Load() {
		return domain.ErrProviderUnavailable
	}
	return nil
}

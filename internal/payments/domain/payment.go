// Package domain holds the payments service's entities and rules: what a
// payment is, which requests are valid, and which status changes are
// allowed. It does no I/O.
package domain

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Limits of an authorization request.
const (
	MaxAmountCents          = 100_000_000
	MaxIdempotencyKeyLength = 255
	MaxPaymentTokenLength   = 255
)

// currencies is the allow-list of ISO 4217 codes, the same the catalog
// prices in.
var currencies = map[string]bool{
	"AUD": true, "CAD": true, "CHF": true, "DKK": true, "EUR": true, "GBP": true,
	"JPY": true, "NOK": true, "PLN": true, "SEK": true, "USD": true,
}

// Status is where a payment is in its life.
type Status string

// The statuses. Pending is internal: an authorization that was recorded
// but whose provider answer is not yet; it is never shown to a client.
const (
	StatusPending    Status = "pending"
	StatusAuthorized Status = "authorized"
	StatusDeclined   Status = "declined"
	StatusCaptured   Status = "captured"
	StatusVoided     Status = "voided"
	StatusRefunded   Status = "refunded"
)

// Operation is a change to an authorized or captured payment that goes
// through the provider.
type Operation string

// The operations.
const (
	OpCapture Operation = "capture"
	OpVoid    Operation = "void"
	OpRefund  Operation = "refund"
)

// Target is the status a payment has once op is done.
func (op Operation) Target() Status {
	switch op {
	case OpCapture:
		return StatusCaptured
	case OpVoid:
		return StatusVoided
	default:
		return StatusRefunded
	}
}

// Source is the only status op applies to.
func (op Operation) Source() Status {
	if op == OpRefund {
		return StatusCaptured
	}
	return StatusAuthorized
}

// Payment is one authorization of an amount on a card, and what became of
// it. Card data is never part of it: only the brand the provider reported
// and the provider's reference.
type Payment struct {
	ID      string
	OrderID string
	UserID  string
	// AmountCents is in minor units of Currency.
	AmountCents int64
	// Currency is an upper-case ISO 4217 code from the allow-list.
	Currency string
	Status   Status
	// DeclineCode is the provider's reason when Status is declined.
	DeclineCode string
	CardBrand   string
	// ProviderRef is the provider's id of the authorization.
	ProviderRef string
	// IdempotencyKey is the Authorize key that created the payment.
	IdempotencyKey string
	// RequestHash fingerprints the Authorize request (RequestHash), so a
	// replay with the same key can be told apart from a different request.
	RequestHash string
	// PendingOp is the operation begun at the provider but not yet
	// recorded, or "". While it is set no other operation may begin.
	PendingOp Operation
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Visible reports whether the payment may be shown to a client at all.
func (p Payment) Visible() bool { return p.Status != StatusPending }

// AuthorizeInput is what a caller sends to authorize a payment.
type AuthorizeInput struct {
	IdempotencyKey string
	OrderID        string
	UserID         string
	AmountCents    int64
	Currency       string
	PaymentToken   string
}

// Normalize validates in and returns it in canonical form (ids as
// lower-case UUIDs, currency upper-case), so that equal requests hash
// equally.
func (in AuthorizeInput) Normalize() (AuthorizeInput, error) {
	switch {
	case in.IdempotencyKey == "":
		return in, ErrIdempotencyKeyRequired
	case !printableASCII(in.IdempotencyKey, MaxIdempotencyKeyLength):
		return in, ErrIdempotencyKeyInvalid
	}
	orderID, err := CanonicalID(in.OrderID, ErrOrderIDRequired, ErrOrderIDInvalid)
	if err != nil {
		return in, err
	}
	userID, err := CanonicalID(in.UserID, ErrUserIDRequired, ErrUserIDInvalid)
	if err != nil {
		return in, err
	}
	switch {
	case in.AmountCents <= 0:
		return in, ErrAmountNotPositive
	case in.AmountCents > MaxAmountCents:
		return in, ErrAmountTooHigh
	}
	currency, err := NormalizeCurrency(in.Currency)
	if err != nil {
		return in, err
	}
	if err := ValidatePaymentToken(in.PaymentToken); err != nil {
		return in, err
	}
	in.OrderID, in.UserID, in.Currency = orderID, userID, currency
	return in, nil
}

// ValidatePaymentToken checks the shape of a card token: present, and at
// most MaxPaymentTokenLength visible ASCII characters. Whether the
// provider knows it is the provider's to say.
func ValidatePaymentToken(token string) error {
	switch {
	case token == "":
		return ErrPaymentTokenRequired
	case !printableASCII(token, MaxPaymentTokenLength):
		return ErrPaymentTokenInvalid
	}
	return nil
}

// PaymentMethod is what the provider tells about a card token it knows.
type PaymentMethod struct {
	CardBrand string
}

// RequestHash is a SHA-256 over every field of a normalized request but
// the key. It is what is kept of the payment token: enough to recognise the
// same request again, never the token itself.
func (in AuthorizeInput) RequestHash() string {
	h := sha256.New()
	// Length prefixes keep ("ab","c") and ("a","bc") apart.
	for _, field := range []string{in.OrderID, in.UserID, in.Currency, in.PaymentToken} {
		_ = binary.Write(h, binary.BigEndian, uint32(len(field)))
		h.Write([]byte(field))
	}
	_ = binary.Write(h, binary.BigEndian, in.AmountCents)
	return hex.EncodeToString(h.Sum(nil))
}

// CanonicalID returns s as a lower-case hyphenated UUID; missing when s is
// empty, malformed when it is not a UUID.
func CanonicalID(s string, missing, malformed error) (string, error) {
	if s == "" {
		return "", missing
	}
	id, err := uuid.Parse(s)
	if err != nil {
		return "", malformed
	}
	return id.String(), nil
}

// NormalizeCurrency trims and upper-cases s, which must then be on the
// allow-list.
func NormalizeCurrency(s string) (string, error) {
	c := strings.ToUpper(strings.TrimSpace(s))
	if !currencies[c] {
		return "", ErrCurrencyUnknown
	}
	return c, nil
}

// Check decides whether op may begin on p. done means p already is where
// op leads (the operation is a replay and changes nothing); otherwise a nil
// error means op may begin. The errors are Conflicts naming what the
// caller should do instead, or ErrNotFound for a pending payment, which no
// client has seen yet.
func (p Payment) Check(op Operation) (done bool, err error) {
	if p.Status == StatusPending {
		return false, ErrNotFound
	}
	if p.Status == op.Target() {
		return true, nil
	}
	if p.PendingOp != "" && p.PendingOp != op {
		return false, inProgress(p.PendingOp)
	}
	if p.Status == op.Source() {
		return false, nil
	}
	switch p.Status {
	case StatusDeclined:
		return false, ErrDeclined
	case StatusVoided:
		return false, ErrVoided
	case StatusRefunded:
		return false, ErrRefunded
	case StatusCaptured: // op is void
		return false, ErrCapturedRefund
	default: // authorized, op is refund
		return false, ErrNotCapturedVoid
	}
}

func inProgress(op Operation) error {
	switch op {
	case OpCapture:
		return ErrCaptureInProgress
	case OpVoid:
		return ErrVoidInProgress
	default:
		return ErrRefundInProgress
	}
}

func printableASCII(s string, maxLen int) bool {
	if len(s) > maxLen {
		return false
	}
	for i := range len(s) {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

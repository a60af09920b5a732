package domain

import "github.com/mercato-dev/mercato/internal/platform/apperr"

// Causes of the errors a caller tells apart from others of their kind
// (apperr.Cause, the "cause" of the ErrorInfo on the wire). They are part
// of the API: the orders saga acts on them.
const (
	CauseCaptureInProgress   = "capture_in_progress"
	CauseVoidInProgress      = "void_in_progress"
	CauseRefundInProgress    = "refund_in_progress"
	CauseConcurrentChange    = "concurrent_change"
	CauseUnknownPaymentToken = "unknown_payment_token"
)

// Errors of the payments service. Every one carries a kind and a
// client-safe message.
var (
	// ErrNotFound is returned for a payment that does not exist, is not
	// visible to the caller, or whose authorization is still in flight.
	ErrNotFound = apperr.New(apperr.NotFound, "payment not found")
	// ErrPaymentsNotFound is ListPayments finding no payment of the order
	// that the caller may see; it does not reveal whether the order exists.
	ErrPaymentsNotFound = apperr.New(apperr.NotFound, "payments not found")

	ErrIdempotencyKeyRequired = apperr.New(apperr.Invalid, "idempotency_key is required")
	ErrIdempotencyKeyInvalid  = apperr.New(apperr.Invalid,
		"idempotency_key must be at most 255 visible ASCII characters")
	ErrOrderIDRequired      = apperr.New(apperr.Invalid, "order_id is required")
	ErrOrderIDInvalid       = apperr.New(apperr.Invalid, "order_id must be a UUID")
	ErrUserIDRequired       = apperr.New(apperr.Invalid, "user_id is required")
	ErrUserIDInvalid        = apperr.New(apperr.Invalid, "user_id must be a UUID")
	ErrPaymentIDRequired    = apperr.New(apperr.Invalid, "payment_id is required")
	ErrAmountNotPositive    = apperr.New(apperr.Invalid, "amount_cents must be greater than 0")
	ErrAmountTooHigh        = apperr.New(apperr.Invalid, "amount_cents must be at most 100000000")
	ErrPaymentTokenRequired = apperr.New(apperr.Invalid, "payment_token is required")
	ErrPaymentTokenInvalid  = apperr.New(apperr.Invalid,
		"payment_token must be at most 255 visible ASCII characters")
	ErrCurrencyUnknown = apperr.New(apperr.Invalid,
		"currency must be one of AUD, CAD, CHF, DKK, EUR, GBP, JPY, NOK, PLN, SEK, USD")

	// ErrIdempotencyKeyReused is an Authorize whose key was already used
	// for a different order, user, amount, currency or card.
	ErrIdempotencyKeyReused = apperr.New(apperr.Unprocessable, "idempotency key reused with a different request")

	// Transitions a payment's status does not allow.
	ErrDeclined        = apperr.New(apperr.Conflict, "payment was declined")
	ErrCapturedRefund  = apperr.New(apperr.Conflict, "payment is captured; refund it instead")
	ErrNotCapturedVoid = apperr.New(apperr.Conflict, "payment is not captured; void it instead")
	ErrVoided          = apperr.New(apperr.Conflict, "payment is voided")
	ErrRefunded        = apperr.New(apperr.Conflict, "payment is refunded")
	ErrOrderCaptured   = apperr.New(apperr.Conflict, "order already has a captured payment")

	// An operation in progress, or a change that kept racing another,
	// refuses without effect: retryable (RetryInfo on the wire), so the
	// caller tries again instead of taking the refusal as an answer. The
	// cause tells a capture in progress apart, which only finishing that
	// capture gets past.
	ErrCaptureInProgress = apperr.New(apperr.Conflict, "payment has a capture in progress; retry the capture",
		apperr.Retryable(), apperr.WithCause(CauseCaptureInProgress))
	ErrVoidInProgress = apperr.New(apperr.Conflict, "payment has a void in progress; retry the void",
		apperr.Retryable(), apperr.WithCause(CauseVoidInProgress))
	ErrRefundInProgress = apperr.New(apperr.Conflict, "payment has a refund in progress; retry the refund",
		apperr.Retryable(), apperr.WithCause(CauseRefundInProgress))
	ErrConcurrentChange = apperr.New(apperr.Conflict, "payment is being changed concurrently, retry",
		apperr.Retryable(), apperr.WithCause(CauseConcurrentChange))

	// Errors of the card provider.
	ErrUnknownPaymentToken = apperr.New(apperr.Invalid, "unknown payment token", apperr.WithCause(CauseUnknownPaymentToken))
	ErrProviderUnavailable = apperr.New(apperr.Unavailable, "payment provider unavailable")
)

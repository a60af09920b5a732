package domain

import "github.com/mercato-dev/mercato/internal/platform/apperr"

// Errors of identity. Each carries a kind and a client-safe message.
// Credential and token failures deliberately share one message each, so a
// caller cannot tell an unknown account from a wrong password, or a reused
// refresh token from an expired one.
var (
	ErrEmailInvalid  = apperr.New(apperr.Invalid, "email must be a valid address of at most 254 characters")
	ErrPasswordShort = apperr.New(apperr.Invalid, "password must be at least 8 characters")
	ErrPasswordLong  = apperr.New(apperr.Invalid, "password must be at most 128 characters")
	ErrPasswordUTF8  = apperr.New(apperr.Invalid, "password must be valid UTF-8")
	ErrNameRequired  = apperr.New(apperr.Invalid, "name is required")
	ErrNameTooLong   = apperr.New(apperr.Invalid, "name must be at most 100 characters")
	ErrNameInvalid   = apperr.New(apperr.Invalid, "name must be valid UTF-8 without control characters")
	ErrRoleUnknown   = apperr.New(apperr.Invalid, "role must be customer or admin")

	ErrEmailTaken = apperr.New(apperr.Conflict, "email already registered")

	// ErrServiceCredentials answers every failed client-credentials
	// exchange alike, so it does not tell which part was wrong.
	ErrServiceCredentials = apperr.New(apperr.Unauthenticated, "invalid service credentials")
	ErrUserNotFound       = apperr.New(apperr.NotFound, "user not found")

	ErrInvalidCredentials = apperr.New(apperr.Unauthenticated, "invalid email or password")
	ErrTooManyLogins      = apperr.New(apperr.TooManyRequests, "too many login attempts")

	ErrRefreshTokenRequired = apperr.New(apperr.Invalid, "refresh_token is required")
	ErrRefreshTokenInvalid  = apperr.New(apperr.Unauthenticated, "invalid or expired refresh token")
	// ErrRefreshTokenReused means a token that was already exchanged was
	// presented again; its family is revoked. The message matches
	// ErrRefreshTokenInvalid on purpose.
	ErrRefreshTokenReused = apperr.New(apperr.Unauthenticated, "invalid or expired refresh token")

	ErrNoSigningKey = apperr.New(apperr.Unavailable, "no signing key available, retry shortly")
)

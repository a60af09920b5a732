package domain_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/identity/domain"
	"github.com/mercato-dev/mercato/internal/platform/apperr"
)

func TestNormalizeEmail(t *testing.T) {
	long := strings.Repeat("a", 64) + "@" + strings.Repeat("b", 185) + ".com" // 254 bytes
	tests := []struct {
		in   string
		want string
		err  error
	}{
		{"ann@example.com", "ann@example.com", nil},
		{"  Ann.Lee@Example.COM ", "ann.lee@example.com", nil},
		{"ann+shop@example.co.uk", "ann+shop@example.co.uk", nil},
		{long, long, nil},
		{long[:60] + "x" + long[60:], "", domain.ErrEmailInvalid}, // 255 bytes
		{"", "", domain.ErrEmailInvalid},
		{"   ", "", domain.ErrEmailInvalid},
		{"ann", "", domain.ErrEmailInvalid},
		{"ann@", "", domain.ErrEmailInvalid},
		{"@example.com", "", domain.ErrEmailInvalid},
		{"ann@@example.com", "", domain.ErrEmailInvalid},
		{"Ann <ann@example.com>", "", domain.ErrEmailInvalid},
		{"<ann@example.com>", "", domain.ErrEmailInvalid},
		{"ann@example.com, bob@example.com", "", domain.ErrEmailInvalid},
		{"ann smith@example.com", "", domain.ErrEmailInvalid},
		{"ann@exa\nmple.com", "", domain.ErrEmailInvalid},
		{"ann\x00@example.com", "", domain.ErrEmailInvalid},
		{"\xff@example.com", "", domain.ErrEmailInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := domain.NormalizeEmail(tt.in)
			require.ErrorIs(t, err, tt.err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestValidatePassword(t *testing.T) {
	tests := []struct {
		name string
		in   string
		err  error
	}{
		{"eight characters", "abcdefgh", nil},
		{"128 characters", strings.Repeat("a", 128), nil},
		{"128 four-byte characters", strings.Repeat("😀", 128), nil},
		{"eight multibyte characters", "éééééééé", nil},
		{"seven characters", "abcdefg", domain.ErrPasswordShort},
		{"seven multibyte characters in 14 bytes", "ééééééé", domain.ErrPasswordShort},
		{"empty", "", domain.ErrPasswordShort},
		{"129 characters", strings.Repeat("a", 129), domain.ErrPasswordLong},
		{"129 four-byte characters", strings.Repeat("😀", 129), domain.ErrPasswordLong},
		{"invalid UTF-8", "abcdefgh\xff", domain.ErrPasswordUTF8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.ErrorIs(t, domain.ValidatePassword(tt.in), tt.err)
		})
	}
}

func TestNormalizeName(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
		err  error
	}{
		{"plain", "Ann Lee", "Ann Lee", nil},
		{"trimmed", "  Ann Lee \t", "Ann Lee", nil},
		{"one character", "A", "A", nil},
		{"100 characters", strings.Repeat("é", 100), strings.Repeat("é", 100), nil},
		{"100 characters after trimming", "  " + strings.Repeat("x", 100) + "  ", strings.Repeat("x", 100), nil},
		{"empty", "", "", domain.ErrNameRequired},
		{"only spaces", "   ", "", domain.ErrNameRequired},
		{"101 characters", strings.Repeat("x", 101), "", domain.ErrNameTooLong},
		{"control character", "Ann\x07Lee", "", domain.ErrNameInvalid},
		{"newline inside", "Ann\nLee", "", domain.ErrNameInvalid},
		{"invalid UTF-8", "Ann\xffLee", "", domain.ErrNameInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := domain.NormalizeName(tt.in)
			require.ErrorIs(t, err, tt.err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestLoginKey(t *testing.T) {
	require.Equal(t, "ann@example.com", domain.LoginKey("  ANN@example.com "))
	require.Equal(t, "not an email", domain.LoginKey("Not An Email"))
	require.Empty(t, domain.LoginKey(strings.Repeat("a", domain.MaxEmailLength+1)), "too long to be an address: not tracked")
}

func TestRegistrationValidate(t *testing.T) {
	got, err := domain.Registration{Email: " Ann@Example.com", Password: "correct horse", Name: " Ann "}.Validate()
	require.NoError(t, err)
	require.Equal(t, domain.Registration{Email: "ann@example.com", Password: "correct horse", Name: "Ann"}, got)

	tests := []struct {
		name string
		in   domain.Registration
		err  error
	}{
		{"bad email", domain.Registration{Email: "nope", Password: "correct horse", Name: "Ann"}, domain.ErrEmailInvalid},
		{"short password", domain.Registration{Email: "ann@example.com", Password: "short", Name: "Ann"}, domain.ErrPasswordShort},
		{"no name", domain.Registration{Email: "ann@example.com", Password: "correct horse", Name: " "}, domain.ErrNameRequired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.in.Validate()
			require.ErrorIs(t, err, tt.err)
			require.Equal(t, apperr.Invalid, apperr.KindOf(err), "validation errors are client errors")
		})
	}
}

func TestErrorKinds(t *testing.T) {
	require.Equal(t, apperr.Conflict, apperr.KindOf(domain.ErrEmailTaken))
	require.Equal(t, "email already registered", domain.ErrEmailTaken.Error())
	require.Equal(t, apperr.Unauthenticated, apperr.KindOf(domain.ErrInvalidCredentials))
	require.Equal(t, "invalid email or password", domain.ErrInvalidCredentials.Error())
	require.Equal(t, apperr.TooManyRequests, apperr.KindOf(domain.ErrTooManyLogins))
	require.Equal(t, "too many login attempts", domain.ErrTooManyLogins.Error())
	require.Equal(t, apperr.Unauthenticated, apperr.KindOf(domain.ErrRefreshTokenReused))
	require.Equal(t, domain.ErrRefreshTokenInvalid.Error(), domain.ErrRefreshTokenReused.Error(),
		"reuse is not told apart from an invalid token")
}

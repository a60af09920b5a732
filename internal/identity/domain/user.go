// Package domain holds identity's accounts, refresh-token families and
// signing keys, and the rules they obey. It does no I/O.
package domain

import (
	"net/mail"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits on account fields.
const (
	MaxEmailLength    = 254 // bytes, RFC 5321 path limit
	MinPasswordLength = 8   // characters
	MaxPasswordLength = 128 // characters
	// MaxPasswordBytes bounds the bytes hashed whatever the characters: 128
	// four-byte characters.
	MaxPasswordBytes = 4 * MaxPasswordLength
	MaxNameLength    = 100 // characters, after trimming
)

// The roles an account can have. They match the roles in access tokens.
const (
	RoleCustomer = "customer"
	RoleAdmin    = "admin"
)

// User is an account. Email is unique, lower-case and valid.
type User struct {
	ID    string
	Email string
	Name  string
	Role  string
	// PasswordHash is the encoded argon2id hash; never shown to anyone.
	PasswordHash string
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// Registration is what a client supplies to open an account.
type Registration struct {
	Email    string
	Password string
	Name     string
}

// Validate returns r normalised (email lower-case, name trimmed), or the
// first rule it breaks.
func (r Registration) Validate() (Registration, error) {
	email, err := NormalizeEmail(r.Email)
	if err != nil {
		return Registration{}, err
	}
	if err := ValidatePassword(r.Password); err != nil {
		return Registration{}, err
	}
	name, err := NormalizeName(r.Name)
	if err != nil {
		return Registration{}, err
	}
	return Registration{Email: email, Password: r.Password, Name: name}, nil
}

// NormalizeEmail returns raw as a bare, lower-case address, or
// ErrEmailInvalid. A display name ("Ann <ann@example.com>") is refused: the
// address must be all there is.
func NormalizeEmail(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if s == "" || len(s) > MaxEmailLength || !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl) {
		return "", ErrEmailInvalid
	}
	addr, err := mail.ParseAddress(s)
	if err != nil || addr.Name != "" || addr.Address != s {
		return "", ErrEmailInvalid
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return "", ErrEmailInvalid
	}
	return strings.ToLower(s), nil
}

// LoginKey is the form of a login email used to count attempts: lower-case
// and trimmed, whether or not it is a valid address, so variants of one
// address share one limit. It is empty (not counted) for strings too long
// to be an address, which are refused without any work and must not fill
// the limiter's memory.
func LoginKey(email string) string {
	s := strings.TrimSpace(email)
	if len(s) > MaxEmailLength {
		return ""
	}
	return strings.ToLower(s)
}

// ValidatePassword checks the length rules: 8 to 128 characters and at most
// MaxPasswordBytes bytes, so hashing cost does not depend on the client.
func ValidatePassword(p string) error {
	if !utf8.ValidString(p) {
		return ErrPasswordUTF8
	}
	n := utf8.RuneCountInString(p)
	switch {
	case n < MinPasswordLength:
		return ErrPasswordShort
	case n > MaxPasswordLength || len(p) > MaxPasswordBytes:
		return ErrPasswordLong
	}
	return nil
}

// NormalizeName trims raw and checks it is 1 to 100 characters of valid
// UTF-8 without control characters.
func NormalizeName(raw string) (string, error) {
	if !utf8.ValidString(raw) {
		return "", ErrNameInvalid
	}
	s := strings.TrimSpace(raw)
	switch n := utf8.RuneCountInString(s); {
	case n == 0:
		return "", ErrNameRequired
	case n > MaxNameLength:
		return "", ErrNameTooLong
	}
	if strings.ContainsFunc(s, unicode.IsControl) {
		return "", ErrNameInvalid
	}
	return s, nil
}

// ValidRole reports whether role is one an account can have.
func ValidRole(role string) bool { return role == RoleCustomer || role == RoleAdmin }

// Package pagination holds what keyset-paged lists share: the bounds of a
// page size and signed page tokens that say where the next page starts.
package pagination

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/google/uuid"
)

// Page size bounds.
const (
	DefaultPageSize = 20
	MaxPageSize     = 100
)

// PageSize returns the page size to serve for a requested one:
// DefaultPageSize for 0, else requested if it is within 1..MaxPageSize,
// else ErrPageSize.
func PageSize(requested int) (int, error) {
	switch {
	case requested == 0:
		return DefaultPageSize, nil
	case requested < 0 || requested > MaxPageSize:
		return 0, ErrPageSize
	}
	return requested, nil
}

// Tokens issues and checks the page tokens of one list. A token is
//
//	base64url(json{"a": last id, "s": hash of list and scope}) "." base64url(HMAC-SHA256)
//
// The signature makes tokens opaque to clients in effect: one cannot be
// forged, edited to skip elsewhere, or replayed for another scope (another
// user, another filter) or another list signed with the same key: the
// hash would not match. Every replica must share the key, or a token issued
// by one is refused by another. Tokens is safe for concurrent use.
type Tokens struct {
	key  []byte
	list string
}

type tokenBody struct {
	Last      string `json:"a"`
	ScopeHash string `json:"s"`
}

// NewTokens returns the tokens of the list named list (such as "orders"),
// signed with key. It panics when key is empty: anyone could sign then.
func NewTokens(key []byte, list string) Tokens {
	if len(key) == 0 {
		panic("pagination: empty page token key")
	}
	return Tokens{key: slices.Clone(key), list: list}
}

// Issue returns the token for the page that follows the item with id last
// (a UUID) in the result set that scope names. Scope is whatever a token
// must not be reused across: whose items were listed, with which filter.
func (t Tokens) Issue(last, scope string) string {
	payload, _ := json.Marshal(tokenBody{Last: last, ScopeHash: t.scopeHash(scope)}) // cannot fail: two strings
	enc := base64.RawURLEncoding
	return enc.EncodeToString(payload) + "." + enc.EncodeToString(t.sign(payload))
}

// Parse returns the id of the last item before the page token continues
// at, or ErrInvalidPageToken when token was not issued by Issue with this
// key, list and scope.
func (t Tokens) Parse(token, scope string) (string, error) {
	enc := base64.RawURLEncoding
	body, sig, ok := strings.Cut(token, ".")
	if !ok {
		return "", ErrInvalidPageToken
	}
	payload, err := enc.DecodeString(body)
	if err != nil {
		return "", ErrInvalidPageToken
	}
	gotSig, err := enc.DecodeString(sig)
	if err != nil || !hmac.Equal(gotSig, t.sign(payload)) {
		return "", ErrInvalidPageToken
	}
	var b tokenBody
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil || b.ScopeHash != t.scopeHash(scope) {
		return "", ErrInvalidPageToken
	}
	if _, err := uuid.Parse(b.Last); err != nil {
		return "", ErrInvalidPageToken
	}
	return b.Last, nil
}

func (t Tokens) scopeHash(scope string) string {
	sum := sha256.Sum256([]byte(t.list + "\x00" + scope))
	return hex.EncodeToString(sum[:8])
}

func (t Tokens) sign(payload []byte) []byte {
	mac := hmac.New(sha256.New, t.key)
	mac.Write(payload)
	return mac.Sum(nil)
}

// MinKeyLength is the shortest page token key accepted, in bytes.
const MinKeyLength = 16

// ValidateKey reports a configured page token key that is too short; an
// empty one is fine (see KeyOrRandom).
func ValidateKey(key string) error {
	if key != "" && len(key) < MinKeyLength {
		return fmt.Errorf("page token key must be at least %d bytes", MinKeyLength)
	}
	return nil
}

// KeyOrRandom returns the configured page token key, or a random one with
// a warning when none is set: fine for one replica, but a token issued by
// one replica is then refused by the others, and a restart invalidates the
// tokens in flight.
func KeyOrRandom(ctx context.Context, key string, logger *slog.Logger) []byte {
	if key != "" {
		return []byte(key)
	}
	logger.WarnContext(ctx, "page token key not set, using a random one: page tokens will not survive a restart or work across replicas")
	return []byte(rand.Text())
}

package auth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
)

func TestVerifierAcceptsAValidToken(t *testing.T) {
	k := newTestKey(t, "k1")
	v := NewVerifier(staticKeys{k.kid: k.pub}, DefaultIssuer, DefaultAudience)
	token := sign(t, k, validClaims())

	p, err := v.Verify(t.Context(), token)

	require.NoError(t, err)
	require.Equal(t, Principal{UserID: "user-1", Email: "ann@example.com", Role: RoleCustomer, Token: token}, p)
}

func TestVerifierAcceptsAdmin(t *testing.T) {
	k := newTestKey(t, "k1")
	v := NewVerifier(staticKeys{k.kid: k.pub}, DefaultIssuer, DefaultAudience)
	claims := validClaims()
	claims.Role = RoleAdmin

	p, err := v.Verify(t.Context(), sign(t, k, claims))

	require.NoError(t, err)
	require.True(t, p.IsAdmin())
}

func TestVerifierRejects(t *testing.T) {
	good := newTestKey(t, "good")
	other := newTestKey(t, "other")
	keys := staticKeys{good.kid: good.pub}

	withClaims := func(change func(*Claims)) func(t *testing.T) string {
		return func(t *testing.T) string {
			c := validClaims()
			change(&c)
			return sign(t, good, c)
		}
	}
	tests := []struct {
		name  string
		token func(t *testing.T) string
	}{
		{"alg none", func(t *testing.T) string {
			tok := jwt.NewWithClaims(jwt.SigningMethodNone, validClaims())
			tok.Header["kid"] = good.kid
			s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
			require.NoError(t, err)
			return s
		}},
		{"HS256 keyed with the public key", func(t *testing.T) string {
			tok := jwt.NewWithClaims(jwt.SigningMethodHS256, validClaims())
			tok.Header["kid"] = good.kid
			s, err := tok.SignedString([]byte(good.pub))
			require.NoError(t, err)
			return s
		}},
		{"expired", withClaims(func(c *Claims) {
			c.IssuedAt = jwt.NewNumericDate(time.Now().Add(-time.Hour))
			c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Minute))
		})},
		{"no expiry", withClaims(func(c *Claims) { c.ExpiresAt = nil })},
		{"wrong audience", withClaims(func(c *Claims) { c.Audience = jwt.ClaimStrings{"someone-else"} })},
		{"wrong issuer", withClaims(func(c *Claims) { c.Issuer = "evil-issuer" })},
		{"unknown role", withClaims(func(c *Claims) { c.Role = "superuser" })},
		{"no role", withClaims(func(c *Claims) { c.Role = "" })},
		{"no subject", withClaims(func(c *Claims) { c.Subject = "" })},
		{"unknown kid", func(t *testing.T) string { return sign(t, other, validClaims()) }},
		{"signed by another key under a known kid", func(t *testing.T) string {
			return sign(t, testKey{kid: good.kid, pub: other.pub, priv: other.priv}, validClaims())
		}},
		{"missing kid", func(t *testing.T) string {
			tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, validClaims())
			s, err := tok.SignedString(good.priv)
			require.NoError(t, err)
			return s
		}},
		{"tampered payload", func(t *testing.T) string {
			parts := strings.Split(sign(t, good, validClaims()), ".")
			c := validClaims()
			c.Role = RoleAdmin
			payload, err := json.Marshal(c)
			require.NoError(t, err)
			parts[1] = base64.RawURLEncoding.EncodeToString(payload)
			return strings.Join(parts, ".")
		}},
		{"garbage", func(*testing.T) string { return "not.a.jwt" }},
		{"empty", func(*testing.T) string { return "" }},
	}
	v := NewVerifier(keys, DefaultIssuer, DefaultAudience)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := v.Verify(t.Context(), tt.token(t))

			require.Error(t, err)
			require.True(t, errors.Is(err, ErrInvalidToken), "error %v is not ErrInvalidToken", err)
			require.Equal(t, Principal{}, p)
		})
	}
}

func TestBearerToken(t *testing.T) {
	tests := []struct {
		header string
		token  string
		ok     bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER  abc ", "abc", true},
		{"Basic abc", "", false},
		{"Bearer ", "", false},
		{"Bearer", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		token, ok := BearerToken(tt.header)
		require.Equal(t, tt.ok, ok, "header %q", tt.header)
		require.Equal(t, tt.token, token, "header %q", tt.header)
	}
}

func TestVerifierRemembersAcceptedTokensUntilTheyExpire(t *testing.T) {
	k := newTestKey(t, "k1")
	keys := staticKeys{k.kid: k.pub}
	v := NewVerifier(keys, DefaultIssuer, DefaultAudience)
	clock := newFakeClock()
	v.now = clock.Now
	claims := validClaims()
	claims.ExpiresAt = jwt.NewNumericDate(clock.Now().Add(30 * time.Second))
	token := sign(t, k, claims)

	p, err := v.Verify(t.Context(), token)
	require.NoError(t, err)
	require.Equal(t, "user-1", p.UserID)
	// Publish a different key under the same kid: a full check would now
	// fail the signature, so passing proves the acceptance was remembered.
	keys[k.kid] = newTestKey(t, "k1").pub
	for range 3 {
		p, err := v.Verify(t.Context(), token)
		require.NoError(t, err, "a remembered token is not checked again")
		require.Equal(t, "user-1", p.UserID)
	}
	keys[k.kid] = k.pub

	// A token differing in one byte is a different key: checked in full, refused.
	tampered := token[:len(token)-2] + flip(token[len(token)-2])
	_, err = v.Verify(t.Context(), tampered)
	require.ErrorIs(t, err, ErrInvalidToken)

	// A remembered token stops verifying as soon as its key is withdrawn.
	other := sign(t, k, validClaimsFor("user-2", clock.Now().Add(30*time.Second)))
	_, err = v.Verify(t.Context(), other)
	require.NoError(t, err)
	delete(keys, k.kid)
	_, err = v.Verify(t.Context(), other)
	require.ErrorIs(t, err, ErrInvalidToken, "the cache never outlives the key")
	keys[k.kid] = k.pub

	// Past its expiry (and the leeway) the cached acceptance is gone.
	clock.Advance(30*time.Second + v.leeway + time.Second)
	_, err = v.Verify(t.Context(), token)
	require.ErrorIs(t, err, ErrInvalidToken)
}

func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

func validClaimsFor(subject string, exp time.Time) Claims {
	c := validClaims()
	c.Subject = subject
	c.ExpiresAt = jwt.NewNumericDate(exp)
	return c
}

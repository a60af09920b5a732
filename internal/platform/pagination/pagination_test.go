package pagination_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/platform/apperr"
	"github.com/mercato-dev/mercato/internal/platform/pagination"
)

var key = []byte("pagination-test-key-0123456789")

func TestPageSize(t *testing.T) {
	for requested, want := range map[int]int{0: 20, 1: 1, 37: 37, 100: 100} {
		got, err := pagination.PageSize(requested)
		require.NoError(t, err, requested)
		require.Equal(t, want, got, requested)
	}
	for _, requested := range []int{-1, 101, 1 << 30} {
		_, err := pagination.PageSize(requested)
		require.ErrorIs(t, err, pagination.ErrPageSize, requested)
		require.Equal(t, apperr.Invalid, apperr.KindOf(err))
		require.EqualError(t, err, "page_size must be between 1 and 100")
	}
}

func TestTokensRoundTrip(t *testing.T) {
	tokens := pagination.NewTokens(key, "orders")
	last := uuid.NewString()
	token := tokens.Issue(last, "user:ada")
	got, err := tokens.Parse(token, "user:ada")
	require.NoError(t, err)
	require.Equal(t, last, got)

	// Another replica with the same key accepts it too.
	got, err = pagination.NewTokens(append([]byte(nil), key...), "orders").Parse(token, "user:ada")
	require.NoError(t, err)
	require.Equal(t, last, got)
}

func TestTokensRefuseWhatTheyDidNotIssue(t *testing.T) {
	tokens := pagination.NewTokens(key, "orders")
	token := tokens.Issue(uuid.NewString(), "user:ada")
	body, sig, ok := strings.Cut(token, ".")
	require.True(t, ok)
	flipped := []byte(sig)
	flipped[0] ^= 1

	cases := map[string]struct{ token, scope string }{
		"garbage":              {"hello", "user:ada"},
		"empty":                {"", "user:ada"},
		"not base64":           {"!!!.###", "user:ada"},
		"no signature":         {body, "user:ada"},
		"tampered signature":   {body + "." + string(flipped), "user:ada"},
		"tampered body":        {tamperLast(t, body) + "." + sig, "user:ada"},
		"other scope":          {token, "user:bob"},
		"empty scope":          {token, ""},
		"signed elsewhere":     {pagination.NewTokens([]byte("some-other-key-0123456789"), "orders").Issue(uuid.NewString(), "user:ada"), "user:ada"},
		"other list, same key": {pagination.NewTokens(key, "notifications").Issue(uuid.NewString(), "user:ada"), "user:ada"},
		"last is not an id":    {sign(t, `{"a":"x' OR 1=1","s":"`+scopeHashOf(t, tokens, "user:ada")+`"}`), "user:ada"},
		"unknown field":        {sign(t, `{"a":"`+uuid.NewString()+`","s":"`+scopeHashOf(t, tokens, "user:ada")+`","z":"1"}`), "user:ada"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := tokens.Parse(c.token, c.scope)
			require.ErrorIs(t, err, pagination.ErrInvalidPageToken)
			require.Equal(t, apperr.Invalid, apperr.KindOf(err))
			require.EqualError(t, err, "invalid page_token")
		})
	}

	// The hand-signed tokens above are refused for what they say, not for
	// how they were made: one made the same way with a valid id passes.
	last := uuid.NewString()
	got, err := tokens.Parse(sign(t, `{"a":"`+last+`","s":"`+scopeHashOf(t, tokens, "user:ada")+`"}`), "user:ada")
	require.NoError(t, err)
	require.Equal(t, last, got)
}

func TestNewTokensRefusesAnEmptyKey(t *testing.T) {
	require.PanicsWithValue(t, "pagination: empty page token key", func() { pagination.NewTokens(nil, "orders") })
}

// tamperLast rewrites the id a token continues after, keeping it well formed.
func tamperLast(t *testing.T, body string) string {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(body)
	require.NoError(t, err)
	var fields map[string]string
	require.NoError(t, json.Unmarshal(raw, &fields))
	require.Contains(t, fields, "a")
	fields["a"] = uuid.NewString()
	raw, err = json.Marshal(fields)
	require.NoError(t, err)
	return base64.RawURLEncoding.EncodeToString(raw)
}

// scopeHashOf reads the scope hash out of a token tokens issues for scope.
func scopeHashOf(t *testing.T, tokens pagination.Tokens, scope string) string {
	t.Helper()
	body, _, _ := strings.Cut(tokens.Issue(uuid.NewString(), scope), ".")
	raw, err := base64.RawURLEncoding.DecodeString(body)
	require.NoError(t, err)
	var fields map[string]string
	require.NoError(t, json.Unmarshal(raw, &fields))
	return fields["s"]
}

// sign makes a token of payload with the test key, as Issue would.
func sign(t *testing.T, payload string) string {
	t.Helper()
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(payload))
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(payload)) + "." + enc.EncodeToString(mac.Sum(nil))
}

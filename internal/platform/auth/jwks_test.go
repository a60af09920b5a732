package auth

import (
	"crypto/ecdh"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/require"
)

// jwksServer serves a key set that tests can change, counting fetches.
type jwksServer struct {
	*httptest.Server
	hits atomic.Int64
	mu   sync.Mutex
	keys []any // JSON objects
}

func newJWKSServer(t *testing.T) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		body, err := json.Marshal(map[string]any{"keys": s.keys})
		s.mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) publish(keys ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = append(s.keys, keys...)
}

// okp is the published JWK of an Ed25519 key.
func okp(k testKey) map[string]any {
	return map[string]any{
		"kty": "OKP", "crv": "Ed25519", "kid": k.kid, "alg": "EdDSA", "use": "sig",
		"x": base64.RawURLEncoding.EncodeToString(k.pub),
	}
}

// warmCache is a cache over a server publishing one key, k1, which the
// cache has fetched once.
func warmCache(t *testing.T) (*jwksServer, testKey, *JWKSCache, *fakeClock) {
	t.Helper()
	srv := newJWKSServer(t)
	k := newTestKey(t, "k1")
	srv.publish(okp(k))
	cache, clock := newTestCache(t, srv)
	_, err := cache.Key(t.Context(), k.kid)
	require.NoError(t, err)
	return srv, k, cache, clock
}

func newTestCache(t *testing.T, s *jwksServer) (*JWKSCache, *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	c := NewJWKSCache(s.URL, s.Client())
	c.now = clock.Now
	return c, clock
}

func TestJWKSCacheServesKeysAVerifierAccepts(t *testing.T) {
	srv := newJWKSServer(t)
	k := newTestKey(t, "k1")
	srv.publish(okp(k))
	cache, _ := newTestCache(t, srv)
	v := NewVerifier(cache, DefaultIssuer, DefaultAudience)

	p, err := v.Verify(t.Context(), sign(t, k, validClaims()))

	require.NoError(t, err)
	require.Equal(t, "user-1", p.UserID)
	require.NoError(t, cache.Ready(t.Context()))

	// Further lookups are answered from the cache.
	for range 10 {
		_, err := cache.Key(t.Context(), k.kid)
		require.NoError(t, err)
	}
	require.EqualValues(t, 1, srv.hits.Load())
}

func TestJWKSCacheRefetchesForANewlyPublishedKey(t *testing.T) {
	srv := newJWKSServer(t)
	oldKey, newKey := newTestKey(t, "old"), newTestKey(t, "new")
	srv.publish(okp(oldKey))
	cache, clock := newTestCache(t, srv)
	v := NewVerifier(cache, DefaultIssuer, DefaultAudience)
	_, err := v.Verify(t.Context(), sign(t, oldKey, validClaims()))
	require.NoError(t, err)

	srv.publish(okp(newKey))
	clock.Advance(cache.MinRefetchInterval)
	p, err := v.Verify(t.Context(), sign(t, newKey, validClaims()))

	require.NoError(t, err, "a token signed by a key published after the first fetch verifies")
	require.Equal(t, "user-1", p.UserID)
	require.EqualValues(t, 2, srv.hits.Load())
	_, err = cache.Key(t.Context(), oldKey.kid)
	require.NoError(t, err, "the old key is still known")
}

func TestJWKSCacheThrottlesRefetchesForUnknownKids(t *testing.T) {
	srv, k, cache, clock := warmCache(t)
	require.EqualValues(t, 1, srv.hits.Load())

	clock.Advance(cache.MinRefetchInterval)
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			_, err := cache.Key(t.Context(), "forged-"+strconv.Itoa(i))
			if !errors.Is(err, ErrUnknownKey) {
				t.Errorf("forged kid: got %v, want ErrUnknownKey", err)
			}
		})
	}
	wg.Wait()
	for i := range 100 {
		clock.Advance(cache.MinRefetchInterval / 200)
		_, err := cache.Key(t.Context(), "forged-again-"+strconv.Itoa(i))
		require.ErrorIs(t, err, ErrUnknownKey)
	}

	require.EqualValues(t, 2, srv.hits.Load(), "at most one fetch per MinRefetchInterval")
	_, err := cache.Key(t.Context(), k.kid)
	require.NoError(t, err, "known keys keep working while throttled")

	clock.Advance(cache.MinRefetchInterval)
	_, err = cache.Key(t.Context(), "forged-later")
	require.ErrorIs(t, err, ErrUnknownKey)
	require.EqualValues(t, 3, srv.hits.Load(), "a later unknown kid may fetch again")
}

func TestJWKSCacheRefreshesStaleKeys(t *testing.T) {
	srv, k, cache, clock := warmCache(t)

	clock.Advance(cache.RefreshInterval)
	_, err := cache.Key(t.Context(), k.kid)

	require.NoError(t, err)
	require.EqualValues(t, 2, srv.hits.Load())
}

func TestJWKSCacheKeepsStaleKeysWhenTheServerFails(t *testing.T) {
	srv, k, cache, clock := warmCache(t)

	srv.Close()
	clock.Advance(cache.RefreshInterval)
	key, err := cache.Key(t.Context(), k.kid)

	require.NoError(t, err, "a fetch failure does not lock out known keys")
	require.Equal(t, k.pub, key)
}

func TestJWKSCacheIgnoresKeysItMustNotTrust(t *testing.T) {
	srv := newJWKSServer(t)
	good := newTestKey(t, "good")
	wrongAlg := newTestKey(t, "wrong-alg")
	encKey := newTestKey(t, "enc")
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	rsaJWK, err := json.Marshal(jose.JSONWebKey{Key: rsaKey.Public(), KeyID: "rsa", Algorithm: "RS256", Use: "sig"})
	require.NoError(t, err)
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	require.NoError(t, err)

	wrongAlgJWK := okp(wrongAlg)
	wrongAlgJWK["alg"] = "HS256"
	encJWK := okp(encKey)
	encJWK["use"] = "enc"
	srv.publish(
		json.RawMessage(rsaJWK),
		wrongAlgJWK,
		encJWK,
		map[string]any{"kty": "OKP", "crv": "X25519", "kid": "x25519", "x": base64.RawURLEncoding.EncodeToString(x25519.PublicKey().Bytes())},
		map[string]any{"kty": "unknown-type", "kid": "mystery"},
		okp(good),
	)
	cache, _ := newTestCache(t, srv)

	key, err := cache.Key(t.Context(), good.kid)
	require.NoError(t, err, "one good key in a set with keys of other kinds is still usable")
	require.Equal(t, good.pub, key)
	for _, kid := range []string{"rsa", "wrong-alg", "enc", "x25519", "mystery"} {
		_, err := cache.Key(t.Context(), kid)
		require.ErrorIs(t, err, ErrUnknownKey, "kid %s", kid)
	}

	// A token signed with the key published under the wrong algorithm is
	// refused even though its signature is valid.
	v := NewVerifier(cache, DefaultIssuer, DefaultAudience)
	_, err = v.Verify(t.Context(), sign(t, wrongAlg, validClaims()))
	require.ErrorIs(t, err, ErrInvalidToken)
}

func TestJWKSCacheReportsAnUnreachableServer(t *testing.T) {
	srv := newJWKSServer(t)
	srv.Close()
	cache, _ := newTestCache(t, srv)

	require.Error(t, cache.Ready(t.Context()))
	_, err := cache.Key(t.Context(), "k1")
	require.ErrorIs(t, err, ErrKeysUnavailable, "no key set at all says nothing about the token")
	require.NotErrorIs(t, err, ErrUnknownKey)
}

func TestJWKSCacheTellsAnUnknownKidFromUnavailableKeys(t *testing.T) {
	srv, k, cache, clock := warmCache(t)

	// The set was fetched and the kid is not in it: a forged or retired key.
	clock.Advance(cache.MinRefetchInterval)
	_, err := cache.Key(t.Context(), "forged")
	require.ErrorIs(t, err, ErrUnknownKey)

	// The issuer is down: a new kid cannot be checked, known ones still can.
	srv.Close()
	clock.Advance(cache.MinRefetchInterval)
	_, err = cache.Key(t.Context(), "k2")
	require.ErrorIs(t, err, ErrKeysUnavailable)
	_, err = cache.Key(t.Context(), "k3")
	require.ErrorIs(t, err, ErrKeysUnavailable, "while refetches are throttled, the last failure still counts")
	key, err := cache.Key(t.Context(), k.kid)
	require.NoError(t, err)
	require.Equal(t, k.pub, key)

	// A token whose key cannot be fetched is not called invalid.
	v := NewVerifier(cache, DefaultIssuer, DefaultAudience)
	k2 := newTestKey(t, "k2")
	_, err = v.Verify(t.Context(), sign(t, k2, validClaims()))
	require.ErrorIs(t, err, ErrKeysUnavailable)
	require.NotErrorIs(t, err, ErrInvalidToken)
}

func TestJWKSCacheRejectsNonOKResponses(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "nope", http.StatusInternalServerError)
	}))
	t.Cleanup(srv.Close)
	cache := NewJWKSCache(srv.URL, srv.Client())
	cache.MinRefetchInterval = 0

	require.ErrorContains(t, cache.Refresh(t.Context()), "status 500")
}

func TestJWKSCacheColdBurstWaitsForTheOneFetch(t *testing.T) {
	key := newTestKey(t, "k1")
	body, err := json.Marshal(map[string]any{"keys": []any{okp(key)}})
	require.NoError(t, err)
	release := make(chan struct{})
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		<-release // hold the first fetch open while the burst arrives
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	cache := NewJWKSCache(srv.URL, srv.Client())

	const burst = 16
	errs := make(chan error, burst)
	for range burst {
		go func() {
			_, err := cache.Key(t.Context(), "k1")
			errs <- err
		}()
	}
	require.Eventually(t, func() bool { return hits.Load() == 1 }, 5*time.Second, time.Millisecond)
	close(release)
	for range burst {
		require.NoError(t, <-errs, "a lookup during the first fetch waits for it instead of failing")
	}
	require.EqualValues(t, 1, hits.Load(), "the burst shares one fetch")
}

func TestJWKSCacheDoesNotFetchAgainForALookupThatSawTheFetchInFlight(t *testing.T) {
	release := make(chan struct{})
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		<-release
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"keys":[]}`))
	}))
	t.Cleanup(srv.Close)
	cache := NewJWKSCache(srv.URL, srv.Client())

	first := make(chan error, 1)
	go func() { first <- cache.Refresh(t.Context()) }()
	require.Eventually(t, func() bool { return hits.Load() == 1 }, 5*time.Second, time.Millisecond)
	// A lookup looks while that fetch is in flight, then is slow to act.
	cache.mu.RLock()
	seen := cache.finished
	cache.mu.RUnlock()
	close(release)
	require.NoError(t, <-first)

	require.NoError(t, cache.refresh(t.Context(), seen))
	require.EqualValues(t, 1, hits.Load(), "it takes the outcome of the fetch it saw")
}

package auth

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// FetchToken obtains a fresh service access token and its lifetime.
type FetchToken func(ctx context.Context) (token string, lifetime time.Duration, err error)

// TokenSource caches a service's own access token (client credentials) and
// fetches a new one shortly before it expires. It is safe for concurrent
// use; UnaryClientInterceptor attaches it to the calls a service makes on
// its own behalf.
type TokenSource struct {
	fetch FetchToken
	now   func() time.Time

	mu      sync.Mutex
	token   string
	renewAt time.Time
}

// NewTokenSource returns a TokenSource using fetch.
func NewTokenSource(fetch FetchToken) *TokenSource {
	return &TokenSource{fetch: fetch, now: time.Now}
}

// Token returns a valid token, fetching one when none is cached or the
// cached one is in the last fifth of its life.
func (s *TokenSource) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token != "" && s.now().Before(s.renewAt) {
		return s.token, nil
	}
	token, lifetime, err := s.fetch(ctx)
	if err != nil {
		return "", fmt.Errorf("fetch service token: %w", err)
	}
	s.token, s.renewAt = token, s.now().Add(lifetime*4/5)
	return token, nil
}

// UnaryClientInterceptor attaches the service token to every outgoing call
// that does not already carry an authorization header (a call made on a
// user's behalf keeps the user's token).
func (s *TokenSource) UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if md, ok := metadata.FromOutgoingContext(ctx); !ok || len(md.Get("authorization")) == 0 {
			token, err := s.Token(ctx)
			if err != nil {
				return err
			}
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

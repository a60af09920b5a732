package auth

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

func TestTokenSourceCachesUntilNearExpiry(t *testing.T) {
	clock := newFakeClock()
	fetches := 0
	src := NewTokenSource(func(context.Context) (string, time.Duration, error) {
		fetches++
		return "token-" + string(rune('0'+fetches)), 10 * time.Minute, nil
	})
	src.now = clock.Now

	for range 3 {
		tok, err := src.Token(t.Context())
		require.NoError(t, err)
		require.Equal(t, "token-1", tok)
	}
	clock.Advance(8*time.Minute + time.Second) // into the last fifth of its life
	tok, err := src.Token(t.Context())
	require.NoError(t, err)
	require.Equal(t, "token-2", tok)
	require.Equal(t, 2, fetches)
}

func TestTokenSourceReportsFetchFailure(t *testing.T) {
	src := NewTokenSource(func(context.Context) (string, time.Duration, error) {
		return "", 0, errors.New("identity unreachable")
	})
	_, err := src.Token(t.Context())
	require.ErrorContains(t, err, "identity unreachable")
}

func TestTokenSourceInterceptorKeepsAUsersToken(t *testing.T) {
	src := NewTokenSource(func(context.Context) (string, time.Duration, error) { return "svc", time.Minute, nil })
	intercept := src.UnaryClientInterceptor()
	var sent []string
	invoker := func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
		md, _ := metadata.FromOutgoingContext(ctx)
		sent = md.Get("authorization")
		return nil
	}

	require.NoError(t, intercept(t.Context(), "/m", nil, nil, nil, invoker))
	require.Equal(t, []string{"Bearer svc"}, sent, "a call on the service's own behalf carries its token")

	onBehalf := OutgoingToken(t.Context(), "user-token")
	require.NoError(t, intercept(onBehalf, "/m", nil, nil, nil, invoker))
	require.Equal(t, []string{"Bearer user-token"}, sent, "a call on a user's behalf keeps the user's token")
}

package registry_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/platform/registry"
)

func TestStaticWatchSendsTheConfiguredSetOnce(t *testing.T) {
	reg, err := registry.Open(registry.Config{
		Kind:   registry.KindStatic,
		Static: map[string][]string{"catalog": {"10.0.0.2:9090", "10.0.0.1:9090"}},
	}, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	sets, err := reg.Watch(ctx, "catalog")
	require.NoError(t, err)
	require.Equal(t, []registry.Instance{
		{Service: "catalog", ID: "10.0.0.1:9090", GRPCAddr: "10.0.0.1:9090"},
		{Service: "catalog", ID: "10.0.0.2:9090", GRPCAddr: "10.0.0.2:9090"},
	}, first(t, sets))
	select {
	case set := <-sets:
		require.FailNow(t, "a static set was sent twice", "%v", set)
	default:
	}
	cancel()
	eventually(t, 5*time.Second, func() bool { _, ok := <-sets; return !ok }, "a watch closes when its context ends")

	_, err = reg.Watch(t.Context(), "orders")
	require.ErrorIs(t, err, registry.ErrUnknownService)

	r, err := reg.Register(t.Context(), registry.Instance{Service: "catalog", ID: "c1", GRPCAddr: "10.0.0.9:9090"})
	require.NoError(t, err)
	require.NoError(t, r.Deregister(t.Context()))
	_, err = reg.Register(t.Context(), registry.Instance{Service: "catalog"})
	require.ErrorIs(t, err, registry.ErrInvalidInstance)

	open, err := reg.Watch(t.Context(), "catalog")
	require.NoError(t, err)
	first(t, open)
	require.NoError(t, reg.Close())
	eventually(t, 5*time.Second, func() bool { _, ok := <-open; return !ok }, "Close ends every watch")
	_, err = reg.Watch(t.Context(), "catalog")
	require.ErrorIs(t, err, registry.ErrClosed)
	require.NoError(t, reg.Close(), "Close is idempotent")
}

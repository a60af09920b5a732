package app

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLoginLimiter(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

	t.Run("burst then refill", func(t *testing.T) {
		l := NewLoginLimiter(3, 0, 0)
		for range 3 {
			_, ok := l.Allow("ip", "ann", now)
			require.True(t, ok)
		}
		retry, ok := l.Allow("ip", "ann", now)
		require.False(t, ok)
		require.Equal(t, 20*time.Second, retry)
		_, ok = l.Allow("ip", "ann", now.Add(retry))
		require.True(t, ok)
	})
	t.Run("zero disables", func(t *testing.T) {
		l := NewLoginLimiter(0, 0, 0)
		for range 1000 {
			_, ok := l.Allow("ip", "ann", now)
			require.True(t, ok)
		}
		var nilLimiter *LoginLimiter
		_, ok := nilLimiter.Allow("ip", "ann", now)
		require.True(t, ok)
	})
	t.Run("a refused attempt costs nothing", func(t *testing.T) {
		l := NewLoginLimiter(1, 2, 0)
		_, ok := l.Allow("ip", "ann", now)
		require.True(t, ok)
		for range 10 {
			_, ok = l.Allow("ip", "ann", now) // email over its limit
			require.False(t, ok)
		}
		_, ok = l.Allow("ip", "bob", now)
		require.True(t, ok, "the refused attempts did not use up the IP's budget")
	})
	t.Run("memory is bounded", func(t *testing.T) {
		l := NewLoginLimiter(1, 1, 100)
		for i := range 1000 {
			l.Allow("ip-"+strconv.Itoa(i), "user-"+strconv.Itoa(i), now)
		}
		require.Equal(t, 100, l.perEmail.len())
		require.Equal(t, 100, l.perIP.len())
	})
	t.Run("recently seen keys survive eviction", func(t *testing.T) {
		l := NewLoginLimiter(1, 0, 3)
		_, ok := l.Allow("", "hot", now)
		require.True(t, ok)
		for i := range 10 {
			l.Allow("", "hot", now) // keeps it recent, and refused
			l.Allow("", "cold-"+strconv.Itoa(i), now)
		}
		_, ok = l.Allow("", "hot", now)
		require.False(t, ok, "an active attacker's bucket is not forgotten")
	})
}

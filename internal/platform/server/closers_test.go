package server_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/platform/server"
)

func TestClosersCloseInReverseOrderOnce(t *testing.T) {
	var order []string
	var c server.Closers
	c.Add(func() error { order = append(order, "db"); return nil })
	c.Add(func() error { order = append(order, "nats"); return errors.New("drain failed") })
	c.Add(func() error { order = append(order, "repo"); return nil })
	c.AddLast(func() error { order = append(order, "registry"); return nil })

	err := c.Close()
	require.EqualError(t, err, "drain failed")
	require.Equal(t, []string{"repo", "nats", "db", "registry"}, order)

	require.NoError(t, c.Close(), "a second close does nothing")
	require.Len(t, order, 4)
}

func TestClosersCloseOnErrorOnlyWhenFailing(t *testing.T) {
	build := func(fail bool) (closed *bool, err error) {
		closed = new(bool)
		var c server.Closers
		defer c.CloseOnError(&err)
		c.Add(func() error { *closed = true; return nil })
		if fail {
			return closed, errors.New("listen: address in use")
		}
		return closed, nil
	}
	closed, err := build(false)
	require.NoError(t, err)
	require.False(t, *closed, "a constructor that succeeds keeps what it opened")
	closed, err = build(true)
	require.Error(t, err)
	require.True(t, *closed, "a constructor that fails closes what it opened")
}

package server_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/events"
	"github.com/mercato-dev/mercato/internal/platform/events/natstest"
	"github.com/mercato-dev/mercato/internal/platform/server"
)

var testStreams = []events.Stream{{Name: "THINGS", Domain: "thing"}}

func noMigrations(context.Context, *db.DB) error { return nil }

// A service built on Base is ready once its database and NATS answer,
// runs its components, and closes what it opened, last opened first, only
// after the components have stopped.
func TestBaseRunsComponentsThenClosesInReverse(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	b := server.NewBase("things", logger)
	d, err := b.OpenDB(t.Context(), db.Config{URL: filepath.Join(t.TempDir(), "things.db")}, noMigrations)
	require.NoError(t, err)
	js, err := b.ConnectEvents(t.Context(), events.Config{URL: natstest.Start(t), Streams: testStreams})
	require.NoError(t, err)
	_, err = js.Stream(t.Context(), "THINGS")
	require.NoError(t, err, "the streams exist")
	require.NotNil(t, b.Outbox(d, js, testStreams...))

	var order []string
	componentStopped := make(chan struct{})
	b.AddComponent(func(ctx context.Context) error {
		<-ctx.Done()
		close(componentStopped)
		return nil
	})
	b.OnClose(func() error {
		select {
		case <-componentStopped:
		default:
			t.Error("closed while a component was running")
		}
		order = append(order, "last opened")
		return nil
	})
	_, err = b.Listen(server.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"}, nil)
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	require.Eventually(t, func() bool {
		code, _ := get(t, "http://"+b.HTTPAddr()+"/readyz")
		return code == 200
	}, 10*time.Second, 10*time.Millisecond)
	code, body := get(t, "http://"+b.HTTPAddr()+"/readyz?verbose")
	require.Equal(t, 200, code)
	require.Equal(t, "ready\ncheck database: ok\nreport nats: ok\n", body)

	b.AddReport("broker", func(context.Context) error { return errors.New("not connected") })
	code, body = get(t, "http://"+b.HTTPAddr()+"/readyz?verbose")
	require.Equal(t, 200, code, "a report never makes the instance unready")
	require.Contains(t, body, "report broker: not connected")

	b.AddCheck("probe", func(context.Context) error { return errors.New("probe says no") })
	code, body = get(t, "http://"+b.HTTPAddr()+"/readyz")
	require.Equal(t, 503, code)
	require.Contains(t, body, "probe: probe says no", "a check added after Listen counts")

	cancel()
	require.NoError(t, <-done)
	require.Equal(t, []string{"last opened"}, order)
	require.ErrorContains(t, d.PingContext(t.Context()), "database is closed", "the database is closed after the rest")
}

func TestBaseOpenDBIsAReadinessCheck(t *testing.T) {
	b := server.NewBase("things", slog.New(slog.DiscardHandler))
	d, err := b.OpenDB(t.Context(), db.Config{URL: filepath.Join(t.TempDir(), "things.db")}, noMigrations)
	require.NoError(t, err)
	_, err = b.Listen(server.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"}, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	require.NoError(t, d.Close())
	require.Eventually(t, func() bool {
		code, body := get(t, "http://"+b.HTTPAddr()+"/readyz")
		return code == 503 && strings.Contains(body, "database:")
	}, 10*time.Second, 10*time.Millisecond)
}

func TestBaseCloseOnErrorClosesWhatWasOpened(t *testing.T) {
	build := func() (d *db.DB, err error) {
		b := server.NewBase("things", slog.New(slog.DiscardHandler))
		defer b.CloseOnError(&err)
		d, err = b.OpenDB(t.Context(), db.Config{URL: filepath.Join(t.TempDir(), "things.db")}, noMigrations)
		require.NoError(t, err)
		return d, errors.New("listen: address in use")
	}
	d, err := build()
	require.Error(t, err)
	require.ErrorContains(t, d.PingContext(t.Context()), "database is closed")

	b := server.NewBase("things", slog.New(slog.DiscardHandler))
	_, err = b.OpenDB(t.Context(), db.Config{URL: filepath.Join(t.TempDir(), "things.db")},
		func(context.Context, *db.DB) error { return errors.New("migration 3 failed") })
	require.ErrorContains(t, err, "things database: migration 3 failed")
}

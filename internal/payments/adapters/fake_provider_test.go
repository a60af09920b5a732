package adapters_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/payments/adapters"
	"github.com/mercato-dev/mercato/internal/payments/app"
	"github.com/mercato-dev/mercato/internal/payments/domain"
)

func authorization(key, token string) app.ProviderAuthorization {
	return app.ProviderAuthorization{IdempotencyKey: key, PaymentToken: token, AmountCents: 1000, Currency: "EUR"}
}

func TestFakeProviderTokens(t *testing.T) {
	tests := []struct {
		token    string
		approved bool
		brand    string
		decline  string
	}{
		{adapters.TokenVisa, true, "visa", ""},
		{adapters.TokenMastercard, true, "mastercard", ""},
		{adapters.TokenChargeDeclined, false, "visa", "card_declined"},
		{adapters.TokenInsufficientFunds, false, "visa", "insufficient_funds"},
	}
	for _, tt := range tests {
		t.Run(tt.token, func(t *testing.T) {
			f := adapters.NewFakeProvider(adapters.FakeProviderConfig{})
			res, err := f.Authorize(t.Context(), authorization("k", tt.token))
			require.NoError(t, err)
			require.Equal(t, tt.approved, res.Approved)
			require.Equal(t, tt.brand, res.CardBrand)
			require.Equal(t, tt.decline, res.DeclineCode)
			require.NotEmpty(t, res.Reference)
			require.NotContains(t, res.Reference, tt.token)
		})
	}

	f := adapters.NewFakeProvider(adapters.FakeProviderConfig{})
	_, err := f.Authorize(t.Context(), authorization("k", "tok_bogus"))
	require.ErrorIs(t, err, domain.ErrUnknownPaymentToken)
	require.Zero(t, f.Holds())
}

func TestFakeProviderIsIdempotentByKey(t *testing.T) {
	f := adapters.NewFakeProvider(adapters.FakeProviderConfig{})
	first, err := f.Authorize(t.Context(), authorization("order-1", adapters.TokenVisa))
	require.NoError(t, err)
	again, err := f.Authorize(t.Context(), authorization("order-1", adapters.TokenVisa))
	require.NoError(t, err)
	require.Equal(t, first, again)
	require.Equal(t, 1, f.Holds(), "a repeated key places no second hold")
	require.Equal(t, 2, f.Calls(adapters.OpAuthorize))

	other := authorization("order-1", adapters.TokenVisa)
	other.AmountCents++
	_, err = f.Authorize(t.Context(), other)
	require.ErrorIs(t, err, domain.ErrIdempotencyKeyReused)

	// A restarted provider has forgotten the key but answers it with the
	// same reference.
	restarted := adapters.NewFakeProvider(adapters.FakeProviderConfig{})
	replay, err := restarted.Authorize(t.Context(), authorization("order-1", adapters.TokenVisa))
	require.NoError(t, err)
	require.Equal(t, first.Reference, replay.Reference)

	second, err := f.Authorize(t.Context(), authorization("order-2", adapters.TokenVisa))
	require.NoError(t, err)
	require.NotEqual(t, first.Reference, second.Reference)
}

func TestFakeProviderSettles(t *testing.T) {
	f := adapters.NewFakeProvider(adapters.FakeProviderConfig{})
	res, err := f.Authorize(t.Context(), authorization("k", adapters.TokenVisa))
	require.NoError(t, err)
	require.NoError(t, f.Capture(t.Context(), res.Reference, "capture/p"))
	require.NoError(t, f.Refund(t.Context(), res.Reference, "refund/p"))
	require.NoError(t, f.Void(t.Context(), res.Reference, "void/p"))
	require.Error(t, f.Capture(t.Context(), "someone-elses-ref", "capture/q"))
	require.Equal(t, 2, f.Calls(adapters.OpCapture))
	require.Equal(t, 1, f.Calls(adapters.OpRefund))
	require.Equal(t, 1, f.Calls(adapters.OpVoid))
}

func TestFakeProviderFailureRate(t *testing.T) {
	const calls = 400
	failures := func(rate float64, seed uint64) []bool {
		f := adapters.NewFakeProvider(adapters.FakeProviderConfig{FailureRate: rate, Seed: seed})
		out := make([]bool, calls)
		for i := range out {
			_, err := f.Authorize(t.Context(), authorization(fmt.Sprint(i), adapters.TokenVisa))
			if err != nil {
				require.ErrorIs(t, err, domain.ErrProviderUnavailable)
			}
			out[i] = err != nil
		}
		return out
	}
	count := func(fs []bool) (n int) {
		for _, f := range fs {
			if f {
				n++
			}
		}
		return n
	}

	require.Zero(t, count(failures(0, 1)))
	require.Equal(t, calls, count(failures(1, 1)))

	half := failures(0.5, 42)
	require.InDelta(t, calls/2, count(half), calls/5)
	require.Equal(t, half, failures(0.5, 42), "the same seed fails the same calls")
	require.NotEqual(t, half, failures(0.5, 43))
}

func TestFakeProviderFailedCallHasNoEffect(t *testing.T) {
	f := adapters.NewFakeProvider(adapters.FakeProviderConfig{FailureRate: 1})
	_, err := f.Authorize(t.Context(), authorization("k", adapters.TokenVisa))
	require.ErrorIs(t, err, domain.ErrProviderUnavailable)
	require.Zero(t, f.Holds())
}

func TestFakeProviderOutageSwitch(t *testing.T) {
	f := adapters.NewFakeProvider(adapters.FakeProviderConfig{})
	f.SetDown(true)
	_, err := f.Authorize(t.Context(), authorization("k", adapters.TokenVisa))
	require.ErrorIs(t, err, domain.ErrProviderUnavailable)
	require.ErrorIs(t, f.Capture(t.Context(), "fake_auth_x", "capture/p"), domain.ErrProviderUnavailable)
	f.SetDown(false)
	_, err = f.Authorize(t.Context(), authorization("k", adapters.TokenVisa))
	require.NoError(t, err)
}

func TestFakeProviderLatencyHonoursContext(t *testing.T) {
	f := adapters.NewFakeProvider(adapters.FakeProviderConfig{Latency: time.Hour})
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := f.Authorize(ctx, authorization("k", adapters.TokenVisa))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 10*time.Second)
	require.Zero(t, f.Holds(), "a call abandoned during the latency takes no effect")

	f = adapters.NewFakeProvider(adapters.FakeProviderConfig{Latency: 30 * time.Millisecond})
	start = time.Now()
	_, err = f.Authorize(t.Context(), authorization("k", adapters.TokenVisa))
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(start), 30*time.Millisecond)

	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	err = adapters.NewFakeProvider(adapters.FakeProviderConfig{}).Void(cancelled, "fake_auth_x", "void/p")
	require.True(t, errors.Is(err, context.Canceled))
}

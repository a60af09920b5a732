package domain

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/platform/apperr"
)

func TestNormalizeSKU(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr error
	}{
		{in: "abc-1", want: "ABC-1"},
		{in: "  A.b_C-9 ", want: "A.B_C-9"},
		{in: strings.Repeat("x", 64), want: strings.Repeat("X", 64)},
		{in: "", wantErr: ErrSKURequired},
		{in: "   ", wantErr: ErrSKURequired},
		{in: strings.Repeat("x", 65), wantErr: ErrSKUTooLong},
		{in: "a b", wantErr: ErrSKUCharacters},
		{in: "sku/1", wantErr: ErrSKUCharacters},
		{in: "é", wantErr: ErrSKUCharacters},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := NormalizeSKU(tt.in)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.Equal(t, apperr.Invalid, apperr.KindOf(err))
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestValidateOrderID(t *testing.T) {
	tests := []struct {
		in      string
		wantErr error
	}{
		{in: "0190a8b2-6c1e-7c3a-9f1e-2b3c4d5e6f70"},
		{in: "order:42"},
		{in: "", wantErr: ErrOrderIDRequired},
		{in: strings.Repeat("1", 65), wantErr: ErrOrderIDTooLong},
		{in: "order 1", wantErr: ErrOrderIDCharacters},
		{in: "order/1", wantErr: ErrOrderIDCharacters},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			err := ValidateOrderID(tt.in)
			if tt.wantErr == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.wantErr)
		})
	}
}

func TestValidateOnHand(t *testing.T) {
	require.NoError(t, ValidateOnHand(0))
	require.NoError(t, ValidateOnHand(MaxOnHand))
	require.ErrorIs(t, ValidateOnHand(-1), ErrOnHandRange)
	require.ErrorIs(t, ValidateOnHand(MaxOnHand+1), ErrOnHandRange)
}

func TestValidateTTL(t *testing.T) {
	require.NoError(t, ValidateTTL(0))
	require.NoError(t, ValidateTTL(MaxTTL))
	require.ErrorIs(t, ValidateTTL(-time.Second), ErrTTLRange)
	require.ErrorIs(t, ValidateTTL(MaxTTL+time.Second), ErrTTLRange)
}

func TestNormalizeLines(t *testing.T) {
	many := make([]Line, MaxLines+1)
	for i := range many {
		many[i] = Line{SKU: "A", Quantity: 1}
	}
	tests := []struct {
		name    string
		in      []Line
		want    []Line
		wantErr error
	}{
		{
			name: "merged by normalised sku and sorted",
			in:   []Line{{"b-2", 1}, {"A-1", 2}, {"B-2", 3}, {"a-1", 1}},
			want: []Line{{"A-1", 3}, {"B-2", 4}},
		},
		{name: "one line", in: []Line{{"x", 1000}}, want: []Line{{"X", 1000}}},
		{name: "fifty lines of one sku", in: many[:MaxLines], want: []Line{{"A", MaxLines}}},
		{name: "empty", in: nil, wantErr: ErrNoLines},
		{name: "too many lines", in: many, wantErr: ErrTooManyLines},
		{name: "zero quantity", in: []Line{{"x", 0}}, wantErr: ErrQuantityRange},
		{name: "negative quantity", in: []Line{{"x", -1}}, wantErr: ErrQuantityRange},
		{name: "quantity too high", in: []Line{{"x", 1001}}, wantErr: ErrQuantityRange},
		{name: "merged quantity too high", in: []Line{{"x", 600}, {"X", 401}}, wantErr: ErrQuantityRange},
		{name: "bad sku", in: []Line{{"x y", 1}}, wantErr: ErrSKUCharacters},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeLines(tt.in)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestTransition(t *testing.T) {
	all := []Status{StatusReserved, StatusCommitted, StatusReleased, StatusRestocked, StatusExpired}
	type outcome struct {
		apply bool
		err   error
	}
	want := map[Status]map[Status]outcome{
		StatusCommitted: {
			StatusReserved:  {apply: true},
			StatusCommitted: {},
			StatusReleased:  {err: ErrReservationReleased},
			StatusExpired:   {err: ErrReservationExpired},
			StatusRestocked: {err: ErrReservationRestocked},
		},
		StatusReleased: {
			StatusReserved:  {apply: true},
			StatusCommitted: {err: ErrReservationCommitted},
			StatusReleased:  {},
			StatusExpired:   {},
			StatusRestocked: {err: ErrReservationRestocked},
		},
		StatusRestocked: {
			StatusReserved:  {err: ErrNotCommitted},
			StatusCommitted: {apply: true},
			StatusReleased:  {err: ErrNotCommitted},
			StatusExpired:   {err: ErrNotCommitted},
			StatusRestocked: {},
		},
		StatusExpired: {
			StatusReserved:  {apply: true},
			StatusCommitted: {},
			StatusReleased:  {},
			StatusExpired:   {},
			StatusRestocked: {},
		},
	}
	for to, froms := range want {
		for _, from := range all {
			t.Run(string(from)+"->"+string(to), func(t *testing.T) {
				w := froms[from]
				apply, err := Transition(from, to)
				require.Equal(t, w.apply, apply)
				if w.err == nil {
					require.NoError(t, err)
					return
				}
				require.ErrorIs(t, err, w.err)
				require.Equal(t, apperr.Conflict, apperr.KindOf(err))
			})
		}
	}
}

func TestEffectsKeepOnHandPlusSold(t *testing.T) {
	for _, to := range []Status{StatusReserved, StatusCommitted, StatusReleased, StatusExpired, StatusRestocked} {
		d := EffectOf(to, 7)
		require.Zero(t, d.OnHand+d.Sold, "%s changes on_hand + sold", to)
		require.NotEqual(t, Delta{}, d, "%s changes nothing", to)
	}
}

func TestOutOfStockError(t *testing.T) {
	var err error = &OutOfStockError{SKU: "ABC-1"}
	require.ErrorIs(t, err, ErrOutOfStock)
	kind, msg := apperr.Public(err)
	require.Equal(t, apperr.Conflict, kind)
	require.Equal(t, "insufficient stock for sku ABC-1", msg)

	var below error = &BelowReservedError{Reserved: 3}
	require.ErrorIs(t, below, ErrBelowReserved)
	kind, msg = apperr.Public(below)
	require.Equal(t, apperr.Conflict, kind)
	require.Equal(t, "on_hand cannot be below reserved stock (3 reserved)", msg)
	require.False(t, errors.Is(below, ErrOutOfStock))
}

func TestExpiredAt(t *testing.T) {
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	r := Reservation{Status: StatusReserved, ExpiresAt: now}
	require.True(t, r.ExpiredAt(now))
	require.False(t, r.ExpiredAt(now.Add(-time.Nanosecond)))
	r.Status = StatusCommitted
	require.False(t, r.ExpiredAt(now.Add(time.Hour)))
}

func TestMoveConsidersExpiry(t *testing.T) {
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	live := Reservation{Status: StatusReserved, ExpiresAt: now.Add(time.Minute)}
	past := Reservation{Status: StatusReserved, ExpiresAt: now}

	apply, err := live.Move(StatusCommitted, now)
	require.NoError(t, err)
	require.True(t, apply)
	_, err = past.Move(StatusCommitted, now)
	require.ErrorIs(t, err, ErrReservationExpired)

	apply, err = live.Move(StatusExpired, now)
	require.NoError(t, err)
	require.False(t, apply, "a live reservation is not due to expire")
	apply, err = past.Move(StatusExpired, now)
	require.NoError(t, err)
	require.True(t, apply)

	apply, err = past.Move(StatusReleased, now)
	require.NoError(t, err)
	require.True(t, apply, "an overdue reservation can still be released")
}

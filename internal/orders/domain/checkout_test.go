package domain_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/orders/domain"
	"github.com/mercato-dev/mercato/internal/platform/apperr"
)

func TestNormalizeItems(t *testing.T) {
	many := make([]domain.ItemInput, 51)
	for i := range many {
		many[i] = domain.ItemInput{ProductID: strings.Repeat("p", 1) + string(rune('A'+i%26)) + string(rune('a'+i/26)), Quantity: 1}
	}
	tests := []struct {
		name    string
		in      []domain.ItemInput
		want    []domain.ItemInput
		wantMsg string
	}{
		{"one line", []domain.ItemInput{{"p1", 1}}, []domain.ItemInput{{"p1", 1}}, ""},
		{"merges and sorts", []domain.ItemInput{{"p2", 1}, {" p1 ", 2}, {"p2", 3}},
			[]domain.ItemInput{{"p1", 2}, {"p2", 4}}, ""},
		{"zero quantity", []domain.ItemInput{{"p1", 1}, {"p2", 0}}, nil, "items[1].quantity must be between 1 and 100"},
		{"negative quantity", []domain.ItemInput{{"p1", -3}}, nil, "items[0].quantity must be between 1 and 100"},
		{"huge quantity", []domain.ItemInput{{"p1", 1 << 40}}, nil, "items[0].quantity must be between 1 and 100"},
		{"merged quantity too large", []domain.ItemInput{{"p1", 60}, {"p1", 41}}, nil, "items quantity of product p1 must be at most 100 in total"},
		{"missing product", []domain.ItemInput{{"  ", 1}}, nil, "items[0].product_id is required"},
		{"malformed product", []domain.ItemInput{{"p\n1", 1}}, nil, "items[0].product_id is malformed"},
		{"long product", []domain.ItemInput{{strings.Repeat("x", 65), 1}}, nil, "items[0].product_id is malformed"},
		{"too many lines", many, nil, "items must have at most 50 distinct products"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := domain.NormalizeItems("items", tt.in)
			if tt.wantMsg != "" {
				require.Error(t, err)
				require.Equal(t, apperr.Invalid, apperr.KindOf(err))
				require.Equal(t, tt.wantMsg, err.Error())
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestPriceItems(t *testing.T) {
	products := map[string]domain.Product{
		"p1":  {ID: "p1", SKU: "S1", Name: "Mug", PriceCents: 1250, Currency: "EUR"},
		"p2":  {ID: "p2", SKU: "S2", Name: "Pen", PriceCents: 99, Currency: "EUR"},
		"usd": {ID: "usd", SKU: "S3", Name: "Hat", PriceCents: 500, Currency: "USD"},
		"big": {ID: "big", SKU: "S4", Name: "Car", PriceCents: 10_000_000, Currency: "EUR"},
	}
	items, total, cur, err := domain.PriceItems([]domain.ItemInput{{"p1", 2}, {"p2", 3}}, products)
	require.NoError(t, err)
	require.Equal(t, int64(2*1250+3*99), total)
	require.Equal(t, "EUR", cur)
	require.Equal(t, domain.Item{ProductID: "p1", SKU: "S1", Name: "Mug", Quantity: 2, UnitPriceCents: 1250, LineTotalCents: 2500}, items[0])

	_, _, _, err = domain.PriceItems([]domain.ItemInput{{"p1", 1}, {"nope", 1}}, products)
	require.EqualError(t, err, "unknown product nope")
	require.Equal(t, apperr.Invalid, apperr.KindOf(err))

	_, _, _, err = domain.PriceItems([]domain.ItemInput{{"p1", 1}, {"usd", 1}}, products)
	require.ErrorIs(t, err, domain.ErrMixedCurrencies)

	_, _, _, err = domain.PriceItems([]domain.ItemInput{{"big", 11}}, products)
	require.ErrorIs(t, err, domain.ErrTotalTooLarge)
	require.Equal(t, "order total too large", err.Error())

	_, total, _, err = domain.PriceItems([]domain.ItemInput{{"big", 10}}, products)
	require.NoError(t, err)
	require.Equal(t, int64(domain.MaxTotalCents), total)
}

func TestNormalizeAddress(t *testing.T) {
	good := domain.Address{Name: "Ada Lovelace", Line1: "1 Main St", City: "London", PostalCode: "SW1A 1AA", Country: "GB"}
	with := func(f func(*domain.Address)) *domain.Address { a := good; f(&a); return &a }
	tests := []struct {
		name string
		in   *domain.Address
		want error
	}{
		{"valid", &good, nil},
		{"valid with line2 and dash", with(func(a *domain.Address) { a.Line2 = "Flat 2"; a.PostalCode = "12345-678" }), nil},
		{"missing", nil, domain.ErrAddressRequired},
		{"empty", &domain.Address{}, domain.ErrAddressRequired},
		{"blank name", with(func(a *domain.Address) { a.Name = "   " }), domain.ErrAddressName},
		{"long name", with(func(a *domain.Address) { a.Name = strings.Repeat("é", 101) }), domain.ErrAddressName},
		{"name of 100 runes", with(func(a *domain.Address) { a.Name = strings.Repeat("é", 100) }), nil},
		{"no line1", with(func(a *domain.Address) { a.Line1 = "" }), domain.ErrAddressLine1},
		{"long line1", with(func(a *domain.Address) { a.Line1 = strings.Repeat("x", 201) }), domain.ErrAddressLine1},
		{"long line2", with(func(a *domain.Address) { a.Line2 = strings.Repeat("x", 201) }), domain.ErrAddressLine2},
		{"no city", with(func(a *domain.Address) { a.City = "" }), domain.ErrAddressCity},
		{"no postal code", with(func(a *domain.Address) { a.PostalCode = "" }), domain.ErrAddressPostalCode},
		{"postal code symbols", with(func(a *domain.Address) { a.PostalCode = "12<3>" }), domain.ErrAddressPostalCode},
		{"long postal code", with(func(a *domain.Address) { a.PostalCode = strings.Repeat("1", 21) }), domain.ErrAddressPostalCode},
		{"lower-case country", with(func(a *domain.Address) { a.Country = "gb" }), domain.ErrAddressCountry},
		{"three-letter country", with(func(a *domain.Address) { a.Country = "GBR" }), domain.ErrAddressCountry},
		{"control character", with(func(a *domain.Address) { a.City = "Lon\x00don" }), domain.ErrAddressText},
		{"invalid UTF-8", with(func(a *domain.Address) { a.Line1 = "\xff" }), domain.ErrAddressText},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := domain.NormalizeAddress(tt.in)
			if tt.want != nil {
				require.ErrorIs(t, err, tt.want)
				require.Equal(t, apperr.Invalid, apperr.KindOf(err))
				require.Contains(t, err.Error(), "shipping_address")
				return
			}
			require.NoError(t, err)
			require.Equal(t, strings.TrimSpace(tt.in.Name), got.Name)
		})
	}
}

func TestValidatePaymentToken(t *testing.T) {
	for tok, want := range map[string]error{
		"tok_visa":                       nil,
		"tok_chargeDeclined":             nil,
		"tok_" + strings.Repeat("a", 64): nil,
		"":                               domain.ErrPaymentTokenEmpty,
		"tok_":                           domain.ErrPaymentToken,
		"tok_" + strings.Repeat("a", 65): domain.ErrPaymentToken,
		"visa":                           domain.ErrPaymentToken,
		"tok_visa!":                      domain.ErrPaymentToken,
		"tok_visa\n":                     domain.ErrPaymentToken,
		"4242424242424242":               domain.ErrPaymentToken,
	} {
		err := domain.ValidatePaymentToken(tok)
		if want == nil {
			require.NoError(t, err, tok)
		} else {
			require.ErrorIs(t, err, want, tok)
		}
	}
	require.Equal(t, "payment_token is malformed", domain.ErrPaymentToken.Error())
}

func TestNormalizeIdempotencyKey(t *testing.T) {
	k, err := domain.NormalizeIdempotencyKey("  abc ")
	require.NoError(t, err)
	require.Equal(t, "abc", k)
	for _, bad := range []string{"", "   ", strings.Repeat("k", 256)} {
		_, err := domain.NormalizeIdempotencyKey(bad)
		require.ErrorIs(t, err, domain.ErrIdempotencyKeyRequired)
		require.Equal(t, "Idempotency-Key header is required", err.Error())
	}
	_, err = domain.NormalizeIdempotencyKey(strings.Repeat("k", 255))
	require.NoError(t, err)
}

func TestNormalizeCancelReason(t *testing.T) {
	r, err := domain.NormalizeCancelReason("", domain.ReasonCustomerCancelled)
	require.NoError(t, err)
	require.Equal(t, domain.ReasonCustomerCancelled, r)
	r, err = domain.NormalizeCancelReason(" too slow ", "x")
	require.NoError(t, err)
	require.Equal(t, "too slow", r)
	_, err = domain.NormalizeCancelReason(strings.Repeat("x", 201), "x")
	require.ErrorIs(t, err, domain.ErrCancelReason)
	_, err = domain.NormalizeCancelReason("a\x07b", "x")
	require.ErrorIs(t, err, domain.ErrCancelReason)
}

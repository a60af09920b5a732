package domain_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/catalog/domain"
	"github.com/mercato-dev/mercato/internal/platform/apperr"
)

func validInput() domain.ProductInput {
	return domain.ProductInput{
		SKU:         "tee-001",
		Name:        "  Plain T-Shirt ",
		Description: "Soft cotton.\nMachine washable.",
		PriceCents:  1999,
		Currency:    "usd",
		Categories:  []string{"apparel", "t-shirts", "apparel"},
		ImageURL:    "https://img.example.com/tee.png",
	}
}

var now = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func TestNewProductNormalises(t *testing.T) {
	p, err := domain.NewProduct("id-1", validInput(), now)
	require.NoError(t, err)
	require.Equal(t, domain.Product{
		ID: "id-1", SKU: "TEE-001", Name: "Plain T-Shirt", Description: "Soft cotton.\nMachine washable.",
		PriceCents: 1999, Currency: "USD", Categories: []string{"apparel", "t-shirts"},
		ImageURL: "https://img.example.com/tee.png", CreatedAt: now, UpdatedAt: now, Version: 1,
	}, p)
	require.Equal(t, `"v1"`, p.ETag())
}

func TestNewProductRules(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*domain.ProductInput)
		want   error // nil means valid
	}{
		{"sku empty", func(in *domain.ProductInput) { in.SKU = "" }, domain.ErrSKURequired},
		{"sku blank", func(in *domain.ProductInput) { in.SKU = "   " }, domain.ErrSKURequired},
		{"sku 64 chars", func(in *domain.ProductInput) { in.SKU = strings.Repeat("A", 64) }, nil},
		{"sku 65 chars", func(in *domain.ProductInput) { in.SKU = strings.Repeat("A", 65) }, domain.ErrSKUTooLong},
		{"sku with space", func(in *domain.ProductInput) { in.SKU = "AB C" }, domain.ErrSKUCharacters},
		{"sku with slash", func(in *domain.ProductInput) { in.SKU = "AB/C" }, domain.ErrSKUCharacters},
		{"sku with non-ascii", func(in *domain.ProductInput) { in.SKU = "ÄBC" }, domain.ErrSKUCharacters},
		{"sku with dot underscore dash", func(in *domain.ProductInput) { in.SKU = "a.b_c-1" }, nil},

		{"name empty", func(in *domain.ProductInput) { in.Name = "" }, domain.ErrNameRequired},
		{"name blank", func(in *domain.ProductInput) { in.Name = " \t\n" }, domain.ErrNameRequired},
		{"name 200 runes", func(in *domain.ProductInput) { in.Name = strings.Repeat("é", 200) }, nil},
		{"name 201 runes", func(in *domain.ProductInput) { in.Name = strings.Repeat("é", 201) }, domain.ErrNameTooLong},
		{"name 200 runes after trim", func(in *domain.ProductInput) { in.Name = "  " + strings.Repeat("x", 200) + "  " }, nil},
		{"name with control char", func(in *domain.ProductInput) { in.Name = "bad\x00name" }, domain.ErrNameControl},
		{"name with newline inside", func(in *domain.ProductInput) { in.Name = "two\nlines" }, domain.ErrNameControl},
		{"name invalid utf-8", func(in *domain.ProductInput) { in.Name = "bad\xffname" }, domain.ErrNotUTF8},

		{"description empty", func(in *domain.ProductInput) { in.Description = "" }, nil},
		{"description 5000 runes", func(in *domain.ProductInput) { in.Description = strings.Repeat("ü", 5000) }, nil},
		{"description 5001 runes", func(in *domain.ProductInput) { in.Description = strings.Repeat("ü", 5001) }, domain.ErrDescriptionTooLong},
		{"description invalid utf-8", func(in *domain.ProductInput) { in.Description = "\xc3" }, domain.ErrNotUTF8},

		{"price zero", func(in *domain.ProductInput) { in.PriceCents = 0 }, domain.ErrPriceNotPositive},
		{"price negative", func(in *domain.ProductInput) { in.PriceCents = -1 }, domain.ErrPriceNotPositive},
		{"price very negative", func(in *domain.ProductInput) { in.PriceCents = -2147483648 }, domain.ErrPriceNotPositive},
		{"price one", func(in *domain.ProductInput) { in.PriceCents = 1 }, nil},
		{"price maximum", func(in *domain.ProductInput) { in.PriceCents = 100_000_000 }, nil},
		{"price above maximum", func(in *domain.ProductInput) { in.PriceCents = 100_000_001 }, domain.ErrPriceTooHigh},

		{"currency empty", func(in *domain.ProductInput) { in.Currency = "" }, domain.ErrCurrencyUnknown},
		{"currency unknown", func(in *domain.ProductInput) { in.Currency = "XYZ" }, domain.ErrCurrencyUnknown},
		{"currency too long", func(in *domain.ProductInput) { in.Currency = "USDX" }, domain.ErrCurrencyUnknown},
		{"currency lower-case accepted", func(in *domain.ProductInput) { in.Currency = "eur" }, nil},
		{"currency JPY", func(in *domain.ProductInput) { in.Currency = "JPY" }, nil},

		{"no categories", func(in *domain.ProductInput) { in.Categories = nil }, nil},
		{"ten categories", func(in *domain.ProductInput) { in.Categories = numbered(10) }, nil},
		{"eleven categories", func(in *domain.ProductInput) { in.Categories = numbered(11) }, domain.ErrTooManyCategories},
		{"eleven with a repeat is ten", func(in *domain.ProductInput) { in.Categories = append(numbered(10), "c0") }, nil},
		{"category empty", func(in *domain.ProductInput) { in.Categories = []string{""} }, domain.ErrCategoryInvalid},
		{"category upper-case", func(in *domain.ProductInput) { in.Categories = []string{"Shoes"} }, domain.ErrCategoryInvalid},
		{"category with space", func(in *domain.ProductInput) { in.Categories = []string{"run shoes"} }, domain.ErrCategoryInvalid},
		{"category with underscore", func(in *domain.ProductInput) { in.Categories = []string{"run_shoes"} }, domain.ErrCategoryInvalid},
		{"category 50 chars", func(in *domain.ProductInput) { in.Categories = []string{strings.Repeat("a", 50)} }, nil},
		{"category 51 chars", func(in *domain.ProductInput) { in.Categories = []string{strings.Repeat("a", 51)} }, domain.ErrCategoryInvalid},

		{"image url empty", func(in *domain.ProductInput) { in.ImageURL = "" }, nil},
		{"image url http", func(in *domain.ProductInput) { in.ImageURL = "http://example.com/a.jpg" }, nil},
		{"image url relative", func(in *domain.ProductInput) { in.ImageURL = "/img/a.jpg" }, domain.ErrImageURLInvalid},
		{"image url no host", func(in *domain.ProductInput) { in.ImageURL = "https:///a.jpg" }, domain.ErrImageURLInvalid},
		{"image url ftp", func(in *domain.ProductInput) { in.ImageURL = "ftp://example.com/a.jpg" }, domain.ErrImageURLInvalid},
		{"image url javascript", func(in *domain.ProductInput) { in.ImageURL = "javascript:alert(1)" }, domain.ErrImageURLInvalid},
		{"image url with credentials", func(in *domain.ProductInput) { in.ImageURL = "https://u:p@example.com/a.jpg" }, domain.ErrImageURLInvalid},
		{"image url with space", func(in *domain.ProductInput) { in.ImageURL = "https://example.com/a b.jpg" }, domain.ErrImageURLInvalid},
		{"image url 2048", func(in *domain.ProductInput) { in.ImageURL = longURL(2048) }, nil},
		{"image url 2049", func(in *domain.ProductInput) { in.ImageURL = longURL(2049) }, domain.ErrImageURLTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := validInput()
			tt.modify(&in)
			_, err := domain.NewProduct("id", in, now)
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.want)
			require.Equal(t, apperr.Invalid, apperr.KindOf(err))
		})
	}
}

func TestErrorMessagesNameTheField(t *testing.T) {
	fields := map[error]string{
		domain.ErrSKURequired: "sku", domain.ErrSKUTooLong: "sku", domain.ErrSKUCharacters: "sku",
		domain.ErrNameRequired: "name", domain.ErrNameTooLong: "name", domain.ErrNameControl: "name",
		domain.ErrDescriptionTooLong: "description", domain.ErrPriceNotPositive: "price_cents",
		domain.ErrPriceTooHigh: "price_cents", domain.ErrCurrencyUnknown: "currency",
		domain.ErrTooManyCategories: "categories", domain.ErrCategoryInvalid: "categories",
		domain.ErrImageURLTooLong: "image_url", domain.ErrImageURLInvalid: "image_url",
	}
	for err, field := range fields {
		require.True(t, strings.HasPrefix(err.Error(), field+" "), "%q should start with %q", err.Error(), field)
	}
	require.Equal(t, "price_cents must be greater than 0", domain.ErrPriceNotPositive.Error())
}

func TestApply(t *testing.T) {
	p, err := domain.NewProduct("id", validInput(), now)
	require.NoError(t, err)
	later := now.Add(time.Hour)

	t.Run("changes only the named fields and bumps the version", func(t *testing.T) {
		price := int64(2500)
		cats := []string{"sale"}
		next, err := p.Apply(domain.ProductPatch{PriceCents: &price, Categories: &cats}, later)
		require.NoError(t, err)
		require.Equal(t, int64(2500), next.PriceCents)
		require.Equal(t, []string{"sale"}, next.Categories)
		require.Equal(t, p.Name, next.Name)
		require.Equal(t, p.SKU, next.SKU)
		require.Equal(t, p.CreatedAt, next.CreatedAt)
		require.Equal(t, later, next.UpdatedAt)
		require.Equal(t, int64(2), next.Version)
		require.Equal(t, `"v2"`, next.ETag())
		require.Equal(t, int64(1999), p.PriceCents, "the original is not modified")
		require.Equal(t, []string{"apparel", "t-shirts"}, p.Categories, "the original is not modified")
	})
	t.Run("clearing optional fields", func(t *testing.T) {
		empty := ""
		none := []string{}
		next, err := p.Apply(domain.ProductPatch{Description: &empty, ImageURL: &empty, Categories: &none}, later)
		require.NoError(t, err)
		require.Empty(t, next.Description)
		require.Empty(t, next.ImageURL)
		require.Empty(t, next.Categories)
	})
	t.Run("empty patch", func(t *testing.T) {
		_, err := p.Apply(domain.ProductPatch{}, later)
		require.ErrorIs(t, err, domain.ErrNothingToDo)
		require.Equal(t, "nothing to update", err.Error())
	})
	t.Run("invalid values are rejected", func(t *testing.T) {
		neg := int64(-5)
		_, err := p.Apply(domain.ProductPatch{PriceCents: &neg}, later)
		require.ErrorIs(t, err, domain.ErrPriceNotPositive)
		blank := "  "
		_, err = p.Apply(domain.ProductPatch{Name: &blank}, later)
		require.ErrorIs(t, err, domain.ErrNameRequired)
		cur := "BTC"
		_, err = p.Apply(domain.ProductPatch{Currency: &cur}, later)
		require.ErrorIs(t, err, domain.ErrCurrencyUnknown)
	})
}

func TestMatchesIfMatch(t *testing.T) {
	p := domain.Product{Version: 3}
	tests := []struct {
		header string
		want   bool
	}{
		{`"v3"`, true},
		{`*`, true},
		{`"v2"`, false},
		{`v3`, false},
		{`W/"v3"`, false},
		{`"v1", "v3"`, true},
		{`"v1","v2"`, false},
		{``, false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, p.MatchesIfMatch(tt.header), "If-Match %q", tt.header)
	}
}

func TestEventPayload(t *testing.T) {
	p, err := domain.NewProduct("id-9", validInput(), now)
	require.NoError(t, err)
	b, err := domain.EventPayload(p)
	require.NoError(t, err)
	var got map[string]any
	require.NoError(t, json.Unmarshal(b, &got))
	require.Equal(t, "id-9", got["id"])
	require.Equal(t, "TEE-001", got["sku"])
	require.EqualValues(t, 1999, got["price_cents"])
	require.Equal(t, "USD", got["currency"])
	require.EqualValues(t, 1, got["version"])
	require.Equal(t, []any{"apparel", "t-shirts"}, got["categories"])
	require.Equal(t, "2025-03-01T12:00:00Z", got["created_at"])
}

func numbered(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "c" + string(rune('0'+i%10)) + strings.Repeat("x", i/10)
	}
	return out
}

func longURL(n int) string {
	prefix := "https://example.com/"
	return prefix + strings.Repeat("a", n-len(prefix))
}

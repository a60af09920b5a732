// Package domain holds the catalog's products and the rules every product
// obeys, whichever way it was created or changed. It does no I/O.
package domain

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits on product fields.
const (
	MaxSKULength         = 64
	MaxNameLength        = 200 // runes, after trimming
	MaxDescriptionLength = 5000
	MaxPriceCents        = 100_000_000
	MaxCategories        = 10
	MaxCategoryLength    = 50
	MaxImageURLLength    = 2048
)

// currencies is the allow-list of ISO 4217 codes the catalog prices in.
var currencies = map[string]bool{
	"AUD": true, "CAD": true, "CHF": true, "DKK": true, "EUR": true, "GBP": true,
	"JPY": true, "NOK": true, "PLN": true, "SEK": true, "USD": true,
}

// Product is one sellable item. A Product obtained from NewProduct or Apply
// satisfies every invariant of the catalog.
type Product struct {
	ID string
	// SKU is unique and stored upper-case, so "abc-1" and "ABC-1" are the
	// same stock-keeping unit.
	SKU         string
	Name        string
	Description string
	// PriceCents is the price in minor units of Currency.
	PriceCents int64
	// Currency is an upper-case ISO 4217 code from the allow-list.
	Currency string
	// Categories are distinct lower-case slugs, in the order first given.
	Categories []string
	ImageURL   string
	CreatedAt  time.Time
	UpdatedAt  time.Time
	// Version starts at 1 and grows by one with every update; the ETag is
	// derived from it.
	Version int64
}

// ProductInput is what a client supplies to create a product.
type ProductInput struct {
	SKU         string
	Name        string
	Description string
	PriceCents  int64
	Currency    string
	Categories  []string
	ImageURL    string
}

// NewProduct validates and normalises in and returns the first version of the
// product with the given id, created at now. The error is the first rule
// broken, as an apperr.Invalid naming the field.
func NewProduct(id string, in ProductInput, now time.Time) (Product, error) {
	sku, err := NormalizeSKU(in.SKU)
	if err != nil {
		return Product{}, err
	}
	p := Product{ID: id, SKU: sku, CreatedAt: now, UpdatedAt: now, Version: 1}
	err = p.set(ProductPatch{
		Name: &in.Name, Description: &in.Description, PriceCents: &in.PriceCents,
		Currency: &in.Currency, Categories: &in.Categories, ImageURL: &in.ImageURL,
	})
	if err != nil {
		return Product{}, err
	}
	return p, nil
}

// ProductPatch names the fields to change; nil fields are left alone. Only
// these fields may ever change after creation: the id, sku and timestamps
// are the catalog's own.
type ProductPatch struct {
	Name        *string
	Description *string
	PriceCents  *int64
	Currency    *string
	Categories  *[]string
	ImageURL    *string
}

// Empty reports whether the patch changes nothing.
func (pp ProductPatch) Empty() bool {
	return pp.Name == nil && pp.Description == nil && pp.PriceCents == nil &&
		pp.Currency == nil && pp.Categories == nil && pp.ImageURL == nil
}

// Apply returns the next version of p with patch applied at now. p itself is
// not modified. An empty patch is ErrNothingToDo.
func (p Product) Apply(patch ProductPatch, now time.Time) (Product, error) {
	if patch.Empty() {
		return Product{}, ErrNothingToDo
	}
	next := p
	next.Categories = slices.Clone(p.Categories)
	if err := next.set(patch); err != nil {
		return Product{}, err
	}
	next.Version = p.Version + 1
	next.UpdatedAt = now
	return next, nil
}

func (p *Product) set(patch ProductPatch) error {
	if patch.Name != nil {
		name, err := NormalizeName(*patch.Name)
		if err != nil {
			return err
		}
		p.Name = name
	}
	if patch.Description != nil {
		d, err := NormalizeDescription(*patch.Description)
		if err != nil {
			return err
		}
		p.Description = d
	}
	if patch.PriceCents != nil {
		if err := ValidatePrice(*patch.PriceCents); err != nil {
			return err
		}
		p.PriceCents = *patch.PriceCents
	}
	if patch.Currency != nil {
		c, err := NormalizeCurrency(*patch.Currency)
		if err != nil {
			return err
		}
		p.Currency = c
	}
	if patch.Categories != nil {
		cs, err := NormalizeCategories(*patch.Categories)
		if err != nil {
			return err
		}
		p.Categories = cs
	}
	if patch.ImageURL != nil {
		u, err := NormalizeImageURL(*patch.ImageURL)
		if err != nil {
			return err
		}
		p.ImageURL = u
	}
	return nil
}

// ETag is the product's strong entity tag, e.g. `"v3"`; it changes with
// every update.
func (p Product) ETag() string { return fmt.Sprintf(`"v%d"`, p.Version) }

// MatchesIfMatch reports whether an If-Match header value allows changing p:
// "*" or a comma-separated list containing p's ETag. Weak tags never match,
// as If-Match requires strong comparison.
func (p Product) MatchesIfMatch(header string) bool {
	etag := p.ETag()
	for tag := range strings.SplitSeq(header, ",") {
		tag = strings.TrimSpace(tag)
		if tag == "*" || tag == etag {
			return true
		}
	}
	return false
}

// NormalizeSKU trims s and upper-cases it; it must be 1 to 64 characters
// of letters, digits, '.', '_' and '-'.
func NormalizeSKU(s string) (string, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return "", ErrSKURequired
	case len(s) > MaxSKULength:
		return "", ErrSKUTooLong
	}
	for i := 0; i < len(s); i++ {
		if !isSKUByte(s[i]) {
			return "", ErrSKUCharacters
		}
	}
	return strings.ToUpper(s), nil
}

func isSKUByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

// NormalizeName trims s; it must then be 1 to 200 characters (runes) without
// control characters.
func NormalizeName(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", ErrNotUTF8
	}
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return "", ErrNameRequired
	case utf8.RuneCountInString(s) > MaxNameLength:
		return "", ErrNameTooLong
	case strings.ContainsFunc(s, unicode.IsControl):
		return "", ErrNameControl
	}
	return s, nil
}

// NormalizeDescription trims s; it may be empty and at most 5000 characters
// (runes). Line breaks are allowed.
func NormalizeDescription(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", ErrNotUTF8
	}
	s = strings.TrimSpace(s)
	if utf8.RuneCountInString(s) > MaxDescriptionLength {
		return "", ErrDescriptionTooLong
	}
	return s, nil
}

// ValidatePrice checks 0 < cents <= 100,000,000.
func ValidatePrice(cents int64) error {
	switch {
	case cents <= 0:
		return ErrPriceNotPositive
	case cents > MaxPriceCents:
		return ErrPriceTooHigh
	}
	return nil
}

// NormalizeCurrency trims and upper-cases s, which must then be on the
// allow-list.
func NormalizeCurrency(s string) (string, error) {
	c := strings.ToUpper(strings.TrimSpace(s))
	if !currencies[c] {
		return "", ErrCurrencyUnknown
	}
	return c, nil
}

// NormalizeCategories checks every entry is a slug (see ValidCategory) and
// drops repeats, keeping the first occurrence's position. At most 10
// distinct categories are allowed. A nil or empty list gives an empty,
// non-nil list.
func NormalizeCategories(cs []string) ([]string, error) {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		if !ValidCategory(c) {
			return nil, ErrCategoryInvalid
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	if len(out) > MaxCategories {
		return nil, ErrTooManyCategories
	}
	return out, nil
}

// ValidCategory reports whether c is 1 to 50 characters of [a-z0-9-]. Case
// is not folded: "Shoes" is rejected rather than silently becoming "shoes".
func ValidCategory(c string) bool {
	if c == "" || len(c) > MaxCategoryLength {
		return false
	}
	for i := 0; i < len(c); i++ {
		if !isSlugByte(c[i]) {
			return false
		}
	}
	return true
}

func isSlugByte(b byte) bool { return b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '-' }

// NormalizeImageURL trims s; it must be empty or an absolute http(s) URL
// with a host and no credentials, at most 2048 characters.
func NormalizeImageURL(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", nil
	}
	if len(s) > MaxImageURLLength {
		return "", ErrImageURLTooLong
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		strings.ContainsFunc(s, unicode.IsSpace) {
		return "", ErrImageURLInvalid
	}
	return s, nil
}

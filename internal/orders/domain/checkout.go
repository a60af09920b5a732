package domain

import (
	"math"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits of an order.
const (
	MaxLines          = 50
	MaxQuantity       = 100
	MaxIdempotencyKey = 255
	maxProductIDLen   = 64
	maxReasonLen      = 200
)

// ItemInput is one line a client asks for: a product and how many.
type ItemInput struct {
	ProductID string
	Quantity  int64
}

// Item is one priced line of an order. Prices come from the catalog at
// placement, never from the client.
type Item struct {
	ProductID      string `json:"product_id"`
	SKU            string `json:"sku"`
	Name           string `json:"name"`
	Quantity       int64  `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
	LineTotalCents int64  `json:"line_total_cents"`
}

// Product is what the catalog says about a product at placement.
type Product struct {
	ID         string
	SKU        string
	Name       string
	PriceCents int64
	Currency   string
}

// Address is where an order ships.
type Address struct {
	Name       string `json:"name"`
	Line1      string `json:"line1"`
	Line2      string `json:"line2,omitempty"`
	City       string `json:"city"`
	PostalCode string `json:"postal_code"`
	Country    string `json:"country"`
}

// NormalizeIdempotencyKey trims key and checks it is 1 to 255 characters.
func NormalizeIdempotencyKey(key string) (string, error) {
	key = strings.TrimSpace(key)
	if key == "" || len(key) > MaxIdempotencyKey {
		return "", ErrIdempotencyKeyRequired
	}
	return key, nil
}

// NormalizeItems checks the requested lines and merges lines of the same
// product, returning them sorted by product id so that equal requests
// have equal forms. field names the lines in error messages ("items", or
// "cart" when they came from the caller's cart).
func NormalizeItems(field string, in []ItemInput) ([]ItemInput, error) {
	merged := make(map[string]int64, len(in))
	for i, it := range in {
		id := strings.TrimSpace(it.ProductID)
		switch {
		case id == "":
			return nil, itemError("%s[%d].product_id is required", field, i)
		case len(id) > maxProductIDLen || !printable(id):
			return nil, itemError("%s[%d].product_id is malformed", field, i)
		case it.Quantity < 1 || it.Quantity > MaxQuantity:
			return nil, itemError("%s[%d].quantity must be between 1 and %d", field, i, MaxQuantity)
		}
		merged[id] += it.Quantity
		if merged[id] > MaxQuantity {
			return nil, itemError("%s quantity of product %s must be at most %d in total", field, id, MaxQuantity)
		}
	}
	if len(merged) > MaxLines {
		if field == "items" {
			return nil, ErrTooManyItems
		}
		return nil, itemError("%s must have at most %d distinct products", field, MaxLines)
	}
	out := make([]ItemInput, 0, len(merged))
	for id, q := range merged {
		out = append(out, ItemInput{ProductID: id, Quantity: q})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ProductID < out[j].ProductID })
	return out, nil
}

// MaxTotalCents is the largest order total: the most one payment may
// authorize (the payments service's limit), well inside the API's int32
// money fields.
const MaxTotalCents = 100_000_000

// PriceItems prices lines with the catalog's products (by id): every
// product must be known, all in one currency, and the total at most
// MaxTotalCents.
func PriceItems(lines []ItemInput, products map[string]Product) (items []Item, totalCents int64, currency string, err error) {
	items = make([]Item, 0, len(lines))
	for _, l := range lines {
		p, ok := products[l.ProductID]
		if !ok {
			return nil, 0, "", UnknownProductError(l.ProductID)
		}
		if currency == "" {
			currency = p.Currency
		} else if p.Currency != currency {
			return nil, 0, "", ErrMixedCurrencies
		}
		if p.PriceCents <= 0 || p.PriceCents > math.MaxInt32 {
			return nil, 0, "", ErrTotalTooLarge
		}
		line := p.PriceCents * l.Quantity // at most 2^31 * 100: no overflow
		totalCents += line
		if totalCents > MaxTotalCents {
			return nil, 0, "", ErrTotalTooLarge
		}
		items = append(items, Item{
			ProductID: l.ProductID, SKU: p.SKU, Name: p.Name, Quantity: l.Quantity,
			UnitPriceCents: p.PriceCents, LineTotalCents: line,
		})
	}
	return items, totalCents, currency, nil
}

var paymentTokenPattern = regexp.MustCompile(`^tok_[A-Za-z0-9]{1,64}$`)

// ValidatePaymentToken checks the shape of a card token. Whether the
// provider knows it is for payments to say.
func ValidatePaymentToken(token string) error {
	if token == "" {
		return ErrPaymentTokenEmpty
	}
	if !paymentTokenPattern.MatchString(token) {
		return ErrPaymentToken
	}
	return nil
}

var postalCodePattern = regexp.MustCompile(`^[A-Za-z0-9 -]{1,20}$`)

// NormalizeAddress trims the address fields and checks them; nil means
// the client sent none.
func NormalizeAddress(a *Address) (Address, error) {
	if a == nil {
		return Address{}, ErrAddressRequired
	}
	out := Address{
		Name: strings.TrimSpace(a.Name), Line1: strings.TrimSpace(a.Line1), Line2: strings.TrimSpace(a.Line2),
		City: strings.TrimSpace(a.City), PostalCode: strings.TrimSpace(a.PostalCode), Country: strings.TrimSpace(a.Country),
	}
	if out == (Address{}) {
		return Address{}, ErrAddressRequired
	}
	for _, f := range []string{out.Name, out.Line1, out.Line2, out.City} {
		if !printable(f) {
			return Address{}, ErrAddressText
		}
	}
	switch {
	case !lengthBetween(out.Name, 1, 100):
		return Address{}, ErrAddressName
	case !lengthBetween(out.Line1, 1, 200):
		return Address{}, ErrAddressLine1
	case !lengthBetween(out.Line2, 0, 200):
		return Address{}, ErrAddressLine2
	case !lengthBetween(out.City, 1, 100):
		return Address{}, ErrAddressCity
	case !postalCodePattern.MatchString(out.PostalCode):
		return Address{}, ErrAddressPostalCode
	case len(out.Country) != 2 || !isUpperASCII(out.Country[0]) || !isUpperASCII(out.Country[1]):
		return Address{}, ErrAddressCountry
	}
	return out, nil
}

// NormalizeCancelReason trims a client's cancellation reason; empty picks
// def.
func NormalizeCancelReason(reason, def string) (string, error) {
	reason = strings.TrimSpace(reason)
	if reason == "" {
		return def, nil
	}
	if !printable(reason) || utf8.RuneCountInString(reason) > maxReasonLen {
		return "", ErrCancelReason
	}
	return reason, nil
}

// PlaceOrder is what placing an order records.
type PlaceOrder struct {
	OrderID         string
	UserID          string
	Email           string
	Items           []Item
	TotalCents      int64
	Currency        string
	ShippingAddress Address
	PaymentToken    string
	// FromCart says the items came from the buyer's cart.
	FromCart bool
	PlacedAt time.Time
	// Deadline is how long the checkout may take before it is undone.
	Deadline time.Duration
}

// Placed returns the OrderPlaced event that starts the order's stream.
func (p PlaceOrder) Placed() Event {
	placedAt := p.PlacedAt.UTC()
	return Event{Version: 1, OccurredAt: placedAt, Data: OrderPlacedData{
		OrderID: p.OrderID, UserID: p.UserID, Email: p.Email, Items: p.Items,
		TotalCents: p.TotalCents, Currency: p.Currency, ShippingAddress: p.ShippingAddress,
		PaymentToken: p.PaymentToken, PlacedAt: placedAt, DeadlineAt: placedAt.Add(p.Deadline),
		FromCart: p.FromCart,
	}}
}

func lengthBetween(s string, lo, hi int) bool {
	n := utf8.RuneCountInString(s)
	return n >= lo && n <= hi
}

func isUpperASCII(b byte) bool { return b >= 'A' && b <= 'Z' }

func printable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, unicode.IsControl)
}

// Package domain holds the cart's rules: what a cart line is, how many a
// cart may hold, and which quantities are allowed. It does no I/O.
package domain

import (
	"strings"

	"github.com/google/uuid"
)

// Limits of a cart.
const (
	// MaxQuantity is the most of one product a cart line may hold.
	MaxQuantity = 99
	// MaxDistinctItems is the most distinct products one cart may hold.
	MaxDistinctItems = 50
)

// Item is one line of a cart: a product and how many of it.
type Item struct {
	ProductID string
	Quantity  int
}

// SetItem is a validated request to change one line of a cart.
type SetItem struct {
	// ProductID is in canonical (lower-case) UUID form, so "ABC…" and
	// "abc…" name one line.
	ProductID string
	// Quantity is 0..MaxQuantity.
	Quantity int
}

// Removes reports whether the request takes the line out of the cart.
func (s SetItem) Removes() bool { return s.Quantity == 0 }

// NewSetItem validates a request to set productID's quantity: 0 removes,
// 1..MaxQuantity sets. Errors name the offending field.
func NewSetItem(productID string, quantity int) (SetItem, error) {
	id, err := CanonicalProductID(productID)
	if err != nil {
		return SetItem{}, err
	}
	if quantity < 0 || quantity > MaxQuantity {
		return SetItem{}, ErrQuantityRange
	}
	return SetItem{ProductID: id, Quantity: quantity}, nil
}

// CanonicalProductID returns id as a lower-case hyphenated UUID, which is
// how the catalog names products.
func CanonicalProductID(id string) (string, error) {
	id = strings.TrimSpace(id)
	if id == "" {
		return "", ErrProductIDRequired
	}
	u, err := uuid.Parse(id)
	if err != nil {
		return "", ErrProductIDInvalid
	}
	return u.String(), nil
}

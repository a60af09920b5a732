package domain

import (
	"encoding/json"
	"fmt"
	"time"
)

// Subjects of the events the catalog publishes (stream PRODUCTS).
const (
	SubjectProductCreated = "product.created"
	SubjectProductUpdated = "product.updated"
	SubjectProductDeleted = "product.deleted"
)

// ProductEvent is the JSON payload of every product.* event: the product as
// it is after the change (for product.deleted, as it was when deleted).
// Consumers can order updates of one product by Version.
type ProductEvent struct {
	ID          string    `json:"id"`
	SKU         string    `json:"sku"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	PriceCents  int64     `json:"price_cents"`
	Currency    string    `json:"currency"`
	Categories  []string  `json:"categories"`
	ImageURL    string    `json:"image_url"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	Version     int64     `json:"version"`
}

// EventPayload encodes p as a ProductEvent.
func EventPayload(p Product) ([]byte, error) {
	cats := p.Categories
	if cats == nil {
		cats = []string{}
	}
	b, err := json.Marshal(ProductEvent{
		ID: p.ID, SKU: p.SKU, Name: p.Name, Description: p.Description,
		PriceCents: p.PriceCents, Currency: p.Currency, Categories: cats, ImageURL: p.ImageURL,
		CreatedAt: p.CreatedAt.UTC(), UpdatedAt: p.UpdatedAt.UTC(), Version: p.Version,
	})
	if err != nil {
		return nil, fmt.Errorf("encode product event: %w", err)
	}
	return b, nil
}

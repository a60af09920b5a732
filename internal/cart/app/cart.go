// Package app holds the cart's use cases. Every one acts on the caller's
// own cart: no request names a user, so another user's cart cannot even be
// addressed.
package app

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/mercato-dev/mercato/internal/cart/domain"
	"github.com/mercato-dev/mercato/internal/platform/auth"
)

// CartRepository keeps one cart per user. Implementations are safe for
// concurrent use and every method is atomic.
type CartRepository interface {
	// Items returns userID's cart in the order its products were first
	// added (changing a quantity keeps the position); empty, not an error,
	// for a user who never used the cart.
	Items(ctx context.Context, userID string) ([]domain.Item, error)
	// SetQuantity sets productID's quantity (1..domain.MaxQuantity) in
	// userID's cart, appending the line when it is new. Adding a line to a
	// cart that already holds domain.MaxDistinctItems returns
	// domain.ErrCartFull and changes nothing; the check and the insert are
	// one atomic step, so concurrent adds never overfill a cart.
	SetQuantity(ctx context.Context, userID, productID string, quantity int) error
	// Remove takes productID out of userID's cart; a missing line is not
	// an error.
	Remove(ctx context.Context, userID, productID string) error
	// Clear empties userID's cart.
	Clear(ctx context.Context, userID string) error
	// RemoveOrdered takes what was ordered out of userID's cart as the
	// effect of event eventID: each line's quantity drops by the ordered
	// quantity, and a line that reaches 0 (or whose ordered quantity is
	// unknown, 0) goes. tx is the transaction in which the event consumer
	// records eventID as processed; a repository that keeps carts elsewhere
	// must make the effect happen at most once per eventID itself.
	RemoveOrdered(ctx context.Context, tx *sql.Tx, eventID, userID string, ordered []domain.Item) error
}

// Catalog answers whether a product exists.
type Catalog interface {
	// ProductExists reports whether productID is in the catalog, or
	// returns domain.ErrCatalogDown when the catalog cannot tell.
	ProductExists(ctx context.Context, productID string) (bool, error)
}

// Cart runs the cart's use cases. It is safe for concurrent use.
type Cart struct {
	repo    CartRepository
	catalog Catalog
}

// NewCart returns the use cases over repo, checking products in catalog.
func NewCart(repo CartRepository, catalog Catalog) *Cart {
	return &Cart{repo: repo, catalog: catalog}
}

// GetCart returns the caller's cart, oldest line first.
func (c *Cart) GetCart(ctx context.Context) ([]domain.Item, error) {
	p, err := auth.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	items, err := c.repo.Items(ctx, p.UserID)
	if err != nil {
		return nil, fmt.Errorf("get cart: %w", err)
	}
	return items, nil
}

// SetItem sets one line of the caller's cart and returns the cart. A
// quantity of 0 removes the line without asking the catalog (a product
// that was deleted from the catalog can still be taken out); any other
// quantity needs a product the catalog knows: domain.ErrProductNotFound
// otherwise, domain.ErrCatalogDown when the catalog does not answer.
// Setting the same quantity twice changes nothing the second time.
func (c *Cart) SetItem(ctx context.Context, productID string, quantity int) ([]domain.Item, error) {
	p, err := auth.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	set, err := domain.NewSetItem(productID, quantity)
	if err != nil {
		return nil, err
	}
	if set.Removes() {
		if err := c.repo.Remove(ctx, p.UserID, set.ProductID); err != nil {
			return nil, fmt.Errorf("remove cart item: %w", err)
		}
		return c.GetCart(ctx)
	}
	exists, err := c.catalog.ProductExists(ctx, set.ProductID)
	if err != nil {
		return nil, fmt.Errorf("check product: %w", err)
	}
	if !exists {
		return nil, domain.ErrProductNotFound
	}
	if err := c.repo.SetQuantity(ctx, p.UserID, set.ProductID, set.Quantity); err != nil {
		return nil, fmt.Errorf("set cart item: %w", err)
	}
	return c.GetCart(ctx)
}

// ClearCart empties the caller's cart.
func (c *Cart) ClearCart(ctx context.Context) error {
	p, err := auth.RequireUser(ctx)
	if err != nil {
		return err
	}
	if err := c.repo.Clear(ctx, p.UserID); err != nil {
		return fmt.Errorf("clear cart: %w", err)
	}
	return nil
}

// OrderConfirmed is what the cart needs from an order.confirmed event.
type OrderConfirmed struct {
	EventID string
	UserID  string
	Items   []domain.Item
}

// RemoveOrdered applies a confirmed order to its buyer's cart inside the
// consumer's transaction tx: what was bought leaves the cart, and whatever
// the buyer added or raised since placing the order stays. Product ids
// that are not UUIDs cannot be in a cart and are skipped.
func (c *Cart) RemoveOrdered(ctx context.Context, tx *sql.Tx, o OrderConfirmed) error {
	ordered := make([]domain.Item, 0, len(o.Items))
	for _, it := range o.Items {
		id, err := domain.CanonicalProductID(it.ProductID)
		if err != nil {
			continue
		}
		ordered = append(ordered, domain.Item{ProductID: id, Quantity: max(it.Quantity, 0)})
	}
	if len(ordered) == 0 {
		return nil
	}
	if err := c.repo.RemoveOrdered(ctx, tx, o.EventID, o.UserID, ordered); err != nil {
		return fmt.Errorf("remove ordered items: %w", err)
	}
	return nil
}

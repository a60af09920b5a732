package adapters

import (
	"context"

	cartv1 "github.com/mercato-dev/mercato/internal/gen/cart/v1"
	"github.com/mercato-dev/mercato/internal/orders/app"
	"github.com/mercato-dev/mercato/internal/orders/domain"
	"github.com/mercato-dev/mercato/internal/platform/auth"
)

// CartGRPCClient is the app.Cart over the cart's gRPC API. It reads the
// cart as the user, forwarding the user's own token.
type CartGRPCClient struct{ c cartv1.CartServiceClient }

var _ app.Cart = (*CartGRPCClient)(nil)

// NewCartGRPCClient returns the client over c.
func NewCartGRPCClient(c cartv1.CartServiceClient) *CartGRPCClient { return &CartGRPCClient{c: c} }

// Items implements app.Cart.
func (c *CartGRPCClient) Items(ctx context.Context, user auth.Principal) ([]domain.ItemInput, error) {
	resp, err := c.c.GetCart(auth.OutgoingToken(ctx, user.Token), &cartv1.GetCartRequest{})
	if err != nil {
		return nil, classify("get cart", err)
	}
	out := make([]domain.ItemInput, len(resp.GetItems()))
	for i, it := range resp.GetItems() {
		out[i] = domain.ItemInput{ProductID: it.GetProductId(), Quantity: int64(it.GetQuantity())}
	}
	return out, nil
}

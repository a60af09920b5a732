package orderstest

import (
	"context"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cartv1 "github.com/mercato-dev/mercato/internal/gen/cart/v1"
	catalogv1 "github.com/mercato-dev/mercato/internal/gen/catalog/v1"
	"github.com/mercato-dev/mercato/internal/platform/auth"
)

// Catalog is an in-memory catalog serving BatchGetProducts.
type Catalog struct {
	catalogv1.UnimplementedCatalogServiceServer
	Faults

	mu       sync.Mutex
	products map[string]*catalogv1.Product
}

// NewCatalog returns a catalog holding products.
func NewCatalog(products ...*catalogv1.Product) *Catalog {
	c := &Catalog{products: map[string]*catalogv1.Product{}}
	for _, p := range products {
		c.Put(p)
	}
	return c
}

// Put adds or replaces a product.
func (c *Catalog) Put(p *catalogv1.Product) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.products[p.GetId()] = p
}

// BatchGetProducts implements catalogv1.CatalogServiceServer.
func (c *Catalog) BatchGetProducts(ctx context.Context, req *catalogv1.BatchGetProductsRequest) (*catalogv1.BatchGetProductsResponse, error) {
	after, before := c.enter(ctx, "BatchGetProducts")
	if before != nil {
		return nil, before
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out := &catalogv1.BatchGetProductsResponse{}
	for _, id := range req.GetIds() {
		if p, ok := c.products[id]; ok {
			out.Products = append(out.Products, p)
		}
	}
	return out, after()
}

// Cart is an in-memory cart service serving GetCart. It identifies the
// caller as the real one does: from the principal the auth interceptor
// set, or, called in-process, by verifying the forwarded bearer token.
type Cart struct {
	cartv1.UnimplementedCartServiceServer
	Faults
	verifier *auth.Verifier

	mu    sync.Mutex
	carts map[string][]*cartv1.CartItem
}

// NewCart returns empty carts whose callers' tokens keys verify.
func NewCart(keys auth.KeySource) *Cart {
	return &Cart{
		verifier: auth.NewVerifier(keys, auth.DefaultIssuer, auth.DefaultAudience),
		carts:    map[string][]*cartv1.CartItem{},
	}
}

// Set replaces a user's cart.
func (c *Cart) Set(userID string, items ...*cartv1.CartItem) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.carts[userID] = items
}

// GetCart implements cartv1.CartServiceServer.
func (c *Cart) GetCart(ctx context.Context, _ *cartv1.GetCartRequest) (*cartv1.Cart, error) {
	after, before := c.enter(ctx, "GetCart")
	if before != nil {
		return nil, before
	}
	p, ok := auth.FromContext(ctx)
	if !ok {
		var err error
		if p, err = c.verifier.Verify(ctx, bearer(ctx)); err != nil {
			return nil, status.Error(codes.Unauthenticated, "authentication required")
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return &cartv1.Cart{Items: c.carts[p.UserID]}, after()
}

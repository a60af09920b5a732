// Package ports exposes the cart over gRPC and feeds it order events.
package ports

import (
	"context"

	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/mercato-dev/mercato/internal/cart/app"
	"github.com/mercato-dev/mercato/internal/cart/domain"
	cartv1 "github.com/mercato-dev/mercato/internal/gen/cart/v1"
)

// GRPCServer implements cartv1.CartServiceServer over the use cases. Every
// method needs an authenticated caller (none is public) and acts on that
// caller's cart.
type GRPCServer struct {
	cartv1.UnimplementedCartServiceServer
	cart *app.Cart
}

// NewGRPCServer returns the gRPC server for c.
func NewGRPCServer(c *app.Cart) *GRPCServer { return &GRPCServer{cart: c} }

// GetCart implements cartv1.CartServiceServer.
func (s *GRPCServer) GetCart(ctx context.Context, _ *cartv1.GetCartRequest) (*cartv1.Cart, error) {
	items, err := s.cart.GetCart(ctx)
	if err != nil {
		return nil, err
	}
	return toProto(items), nil
}

// SetItem implements cartv1.CartServiceServer.
func (s *GRPCServer) SetItem(ctx context.Context, req *cartv1.SetItemRequest) (*cartv1.Cart, error) {
	items, err := s.cart.SetItem(ctx, req.GetProductId(), int(req.GetQuantity()))
	if err != nil {
		return nil, err
	}
	return toProto(items), nil
}

// ClearCart implements cartv1.CartServiceServer.
func (s *GRPCServer) ClearCart(ctx context.Context, _ *cartv1.ClearCartRequest) (*emptypb.Empty, error) {
	if err := s.cart.ClearCart(ctx); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

func toProto(items []domain.Item) *cartv1.Cart {
	out := &cartv1.Cart{Items: make([]*cartv1.CartItem, len(items))}
	for i, it := range items {
		out.Items[i] = &cartv1.CartItem{ProductId: it.ProductID, Quantity: int32(it.Quantity)}
	}
	return out
}

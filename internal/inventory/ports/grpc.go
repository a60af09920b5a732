// Package ports exposes the inventory over gRPC and runs its background
// expiry sweep.
package ports

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryv1 "github.com/mercato-dev/mercato/internal/gen/inventory/v1"
	"github.com/mercato-dev/mercato/internal/inventory/app"
	"github.com/mercato-dev/mercato/internal/inventory/domain"
)

// PublicMethods is empty: every inventory method needs a valid access
// token, and the use case decides the role (admin for stock, service or
// admin for reservations).
var PublicMethods []string

// GRPCServer implements inventoryv1.InventoryServiceServer over the use
// cases. Authentication happens in the interceptor; authorisation in app.
type GRPCServer struct {
	inventoryv1.UnimplementedInventoryServiceServer
	inventory *app.Inventory
}

// NewGRPCServer returns the gRPC server for inv.
func NewGRPCServer(inv *app.Inventory) *GRPCServer { return &GRPCServer{inventory: inv} }

// GetStock implements inventoryv1.InventoryServiceServer.
func (s *GRPCServer) GetStock(ctx context.Context, req *inventoryv1.GetStockRequest) (*inventoryv1.Stock, error) {
	st, err := s.inventory.GetStock(ctx, req.GetSku())
	if err != nil {
		return nil, err
	}
	return stockToProto(st), nil
}

// SetStock implements inventoryv1.InventoryServiceServer.
func (s *GRPCServer) SetStock(ctx context.Context, req *inventoryv1.SetStockRequest) (*inventoryv1.Stock, error) {
	st, err := s.inventory.SetStock(ctx, req.GetSku(), req.GetOnHand())
	if err != nil {
		return nil, err
	}
	return stockToProto(st), nil
}

// ReserveStock implements inventoryv1.InventoryServiceServer.
func (s *GRPCServer) ReserveStock(ctx context.Context, req *inventoryv1.ReserveStockRequest) (*inventoryv1.Reservation, error) {
	lines := make([]domain.Line, 0, len(req.GetLines()))
	for _, l := range req.GetLines() {
		lines = append(lines, domain.Line{SKU: l.GetSku(), Quantity: l.GetQuantity()})
	}
	r, err := s.inventory.ReserveStock(ctx, app.ReserveStock{
		OrderID: req.GetOrderId(),
		Lines:   lines,
		TTL:     time.Duration(req.GetTtlSeconds()) * time.Second,
	})
	if err != nil {
		return nil, err
	}
	return reservationToProto(r), nil
}

// CommitReservation implements inventoryv1.InventoryServiceServer.
func (s *GRPCServer) CommitReservation(ctx context.Context, req *inventoryv1.CommitReservationRequest) (*inventoryv1.Reservation, error) {
	return reservationResult(s.inventory.CommitReservation(ctx, req.GetOrderId()))
}

// ReleaseReservation implements inventoryv1.InventoryServiceServer.
func (s *GRPCServer) ReleaseReservation(ctx context.Context, req *inventoryv1.ReleaseReservationRequest) (*inventoryv1.Reservation, error) {
	return reservationResult(s.inventory.ReleaseReservation(ctx, req.GetOrderId()))
}

// RestockOrder implements inventoryv1.InventoryServiceServer.
func (s *GRPCServer) RestockOrder(ctx context.Context, req *inventoryv1.RestockOrderRequest) (*inventoryv1.Reservation, error) {
	return reservationResult(s.inventory.RestockOrder(ctx, req.GetOrderId()))
}

// GetReservation implements inventoryv1.InventoryServiceServer.
func (s *GRPCServer) GetReservation(ctx context.Context, req *inventoryv1.GetReservationRequest) (*inventoryv1.Reservation, error) {
	return reservationResult(s.inventory.GetReservation(ctx, req.GetOrderId()))
}

func reservationResult(r domain.Reservation, err error) (*inventoryv1.Reservation, error) {
	if err != nil {
		return nil, err
	}
	return reservationToProto(r), nil
}

func stockToProto(st domain.Stock) *inventoryv1.Stock {
	return &inventoryv1.Stock{
		Sku: st.SKU, OnHand: st.OnHand, Reserved: st.Reserved, Available: st.Available(), Sold: st.Sold,
	}
}

func reservationToProto(r domain.Reservation) *inventoryv1.Reservation {
	out := &inventoryv1.Reservation{OrderId: r.OrderID, Status: string(r.Status)}
	for _, l := range r.Lines {
		out.Lines = append(out.Lines, &inventoryv1.ReservationLine{Sku: l.SKU, Quantity: l.Quantity})
	}
	if !r.ExpiresAt.IsZero() {
		out.ExpiresAt = timestamppb.New(r.ExpiresAt)
	}
	return out
}

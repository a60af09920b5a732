// Package ports exposes the orders service over gRPC.
package ports

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordersv1 "github.com/mercato-dev/mercato/internal/gen/orders/v1"
	"github.com/mercato-dev/mercato/internal/orders/app"
	"github.com/mercato-dev/mercato/internal/orders/domain"
)

// PublicMethods are the methods an anonymous caller may use: none, every
// orders method acts for a user.
var PublicMethods []string

// IdempotencyKeyHeader is the metadata key carrying the client's
// Idempotency-Key header (the gateway forwards it under this name).
const IdempotencyKeyHeader = "idempotency-key"

// GRPCServer implements ordersv1.OrdersServiceServer over the use cases.
// Authentication happens in the interceptor; authorisation in app.
type GRPCServer struct {
	ordersv1.UnimplementedOrdersServiceServer
	orders *app.Orders
}

// NewGRPCServer returns the gRPC server for o.
func NewGRPCServer(o *app.Orders) *GRPCServer { return &GRPCServer{orders: o} }

// PlaceOrder implements ordersv1.OrdersServiceServer.
func (s *GRPCServer) PlaceOrder(ctx context.Context, req *ordersv1.PlaceOrderRequest) (*ordersv1.Order, error) {
	items := make([]domain.ItemInput, len(req.GetItems()))
	for i, it := range req.GetItems() {
		items[i] = domain.ItemInput{ProductID: it.GetProductId(), Quantity: int64(it.GetQuantity())}
	}
	var addr *domain.Address
	if a := req.GetShippingAddress(); a != nil {
		addr = &domain.Address{
			Name: a.GetName(), Line1: a.GetLine1(), Line2: a.GetLine2(), City: a.GetCity(),
			PostalCode: a.GetPostalCode(), Country: a.GetCountry(),
		}
	}
	v, err := s.orders.PlaceOrder(ctx, app.PlaceOrder{
		IdempotencyKey: idempotencyKey(ctx), Items: items, ShippingAddress: addr, PaymentToken: req.GetPaymentToken(),
	})
	if err != nil {
		return nil, err
	}
	return toProto(v), nil
}

// idempotencyKey returns the key the client sent, or "" when it sent none
// or more than one.
func idempotencyKey(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	keys := md.Get(IdempotencyKeyHeader)
	if len(keys) != 1 {
		return ""
	}
	return keys[0]
}

// GetOrder implements ordersv1.OrdersServiceServer.
func (s *GRPCServer) GetOrder(ctx context.Context, req *ordersv1.GetOrderRequest) (*ordersv1.Order, error) {
	v, err := s.orders.WaitForOrder(ctx, req.GetId(), time.Duration(req.GetWaitSeconds())*time.Second)
	if err != nil {
		return nil, err
	}
	return toProto(v), nil
}

// ListOrders implements ordersv1.OrdersServiceServer.
func (s *GRPCServer) ListOrders(ctx context.Context, req *ordersv1.ListOrdersRequest) (*ordersv1.ListOrdersResponse, error) {
	page, err := s.orders.ListOrders(ctx, app.ListOrders{PageSize: int(req.GetPageSize()), PageToken: req.GetPageToken()})
	if err != nil {
		return nil, err
	}
	out := &ordersv1.ListOrdersResponse{Orders: make([]*ordersv1.Order, len(page.Orders)), NextPageToken: page.NextPageToken}
	for i, v := range page.Orders {
		out.Orders[i] = toProto(v)
	}
	return out, nil
}

// ListOrderEvents implements ordersv1.OrdersServiceServer.
func (s *GRPCServer) ListOrderEvents(ctx context.Context, req *ordersv1.ListOrderEventsRequest) (*ordersv1.ListOrderEventsResponse, error) {
	evs, err := s.orders.ListOrderEvents(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	out := &ordersv1.ListOrderEventsResponse{Events: make([]*ordersv1.OrderEvent, len(evs))}
	for i, ev := range evs {
		data, err := eventData(ev.Data)
		if err != nil {
			return nil, err
		}
		out.Events[i] = &ordersv1.OrderEvent{
			Version: int32(ev.Version), Type: string(ev.Type()), Data: data, OccurredAt: timestamppb.New(ev.OccurredAt),
		}
	}
	return out, nil
}

// eventData is an event's data as shown to a client. The payment token is
// left out: it can charge the card, and the client already has it.
func eventData(d domain.EventData) (*structpb.Struct, error) {
	raw, err := domain.EncodeEventData(d)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("decode %s data: %w", d.EventType(), err)
	}
	delete(m, "payment_token")
	st, err := structpb.NewStruct(m)
	if err != nil {
		return nil, fmt.Errorf("convert %s data: %w", d.EventType(), err)
	}
	return st, nil
}

// CancelOrder implements ordersv1.OrdersServiceServer.
func (s *GRPCServer) CancelOrder(ctx context.Context, req *ordersv1.CancelOrderRequest) (*ordersv1.Order, error) {
	v, err := s.orders.CancelOrder(ctx, req.GetId(), req.GetReason())
	if err != nil {
		return nil, err
	}
	return toProto(v), nil
}

// ListStuckOrders implements ordersv1.OrdersServiceServer.
func (s *GRPCServer) ListStuckOrders(ctx context.Context, req *ordersv1.ListStuckOrdersRequest) (*ordersv1.ListStuckOrdersResponse, error) {
	page, err := s.orders.ListStuckOrders(ctx, app.ListOrders{PageSize: int(req.GetPageSize()), PageToken: req.GetPageToken()})
	if err != nil {
		return nil, err
	}
	out := &ordersv1.ListStuckOrdersResponse{
		Orders: make([]*ordersv1.StuckOrder, len(page.Orders)), NextPageToken: page.NextPageToken,
	}
	for i, o := range page.Orders {
		out.Orders[i] = &ordersv1.StuckOrder{
			Order: toProto(o.Order), Step: string(o.Step), Attempts: int32(o.Attempts), LastError: o.LastError,
		}
		if !o.NextAttemptAt.IsZero() {
			out.Orders[i].NextAttemptAt = timestamppb.New(o.NextAttemptAt)
		}
	}
	return out, nil
}

func toProto(v domain.View) *ordersv1.Order {
	items := make([]*ordersv1.OrderItem, len(v.Items))
	for i, it := range v.Items {
		items[i] = &ordersv1.OrderItem{
			ProductId: it.ProductID, Sku: it.SKU, Name: it.Name, Quantity: int32(it.Quantity),
			UnitPriceCents: int32(it.UnitPriceCents), LineTotalCents: int32(it.LineTotalCents),
		}
	}
	a := v.ShippingAddress
	return &ordersv1.Order{
		Id: v.ID, UserId: v.UserID, Status: string(v.Status), Items: items,
		TotalCents: int32(v.TotalCents), Currency: v.Currency,
		ShippingAddress: &ordersv1.Address{
			Name: a.Name, Line1: a.Line1, Line2: a.Line2, City: a.City, PostalCode: a.PostalCode, Country: a.Country,
		},
		Reason: v.Reason, Refunded: v.Refunded,
		CreatedAt: timestamppb.New(v.CreatedAt), UpdatedAt: timestamppb.New(v.UpdatedAt),
	}
}

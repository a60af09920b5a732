package adapters

import (
	"context"
	"fmt"
	"math"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	inventoryv1 "github.com/mercato-dev/mercato/internal/gen/inventory/v1"
	"github.com/mercato-dev/mercato/internal/orders/app"
)

// InventoryGRPCClient is the app.Inventory over the inventory's gRPC API.
// The connection is expected to carry the orders service's own token.
type InventoryGRPCClient struct {
	c inventoryv1.InventoryServiceClient
}

var _ app.Inventory = (*InventoryGRPCClient)(nil)

// NewInventoryGRPCClient returns the client over c.
func NewInventoryGRPCClient(c inventoryv1.InventoryServiceClient) *InventoryGRPCClient {
	return &InventoryGRPCClient{c: c}
}

// Reserve implements app.Inventory.
func (c *InventoryGRPCClient) Reserve(ctx context.Context, orderID string, lines []app.StockLine, ttl time.Duration) (app.Reservation, error) {
	req := &inventoryv1.ReserveStockRequest{
		OrderId:    orderID,
		Lines:      make([]*inventoryv1.ReservationLine, len(lines)),
		TtlSeconds: int32(min(math.Ceil(ttl.Seconds()), math.MaxInt32)),
	}
	for i, l := range lines {
		req.Lines[i] = &inventoryv1.ReservationLine{Sku: l.SKU, Quantity: int32(l.Quantity)}
	}
	res, err := c.c.ReserveStock(ctx, req)
	if err != nil {
		return app.Reservation{}, c.reserveError(err)
	}
	out := app.Reservation{Status: reservationStatus(res.GetStatus())}
	if res.GetExpiresAt() != nil {
		out.ExpiresAt = res.GetExpiresAt().AsTime()
	}
	return out, nil
}

// reserveError classifies a failed reservation, telling apart inventory's
// refusal for want of stock (cause out_of_stock, the short sku in the
// metadata).
func (c *InventoryGRPCClient) reserveError(err error) error {
	if d := detailsOf(err); status.Code(err) == codes.AlreadyExists && d.cause == causeOutOfStock {
		return fmt.Errorf("reserve stock: %w", &app.OutOfStockError{SKU: d.metadata[metadataSKU]})
	}
	return classify("reserve stock", err)
}

// Commit implements app.Inventory.
func (c *InventoryGRPCClient) Commit(ctx context.Context, orderID string) error {
	_, err := c.c.CommitReservation(ctx, &inventoryv1.CommitReservationRequest{OrderId: orderID})
	return classify("commit reservation", err)
}

// Release implements app.Inventory.
func (c *InventoryGRPCClient) Release(ctx context.Context, orderID string) error {
	_, err := c.c.ReleaseReservation(ctx, &inventoryv1.ReleaseReservationRequest{OrderId: orderID})
	return classify("release reservation", err)
}

// Restock implements app.Inventory.
func (c *InventoryGRPCClient) Restock(ctx context.Context, orderID string) error {
	_, err := c.c.RestockOrder(ctx, &inventoryv1.RestockOrderRequest{OrderId: orderID})
	return classify("restock order", err)
}

// reservationStatuses are inventory's reservation statuses on the wire.
var reservationStatuses = map[string]app.ReservationStatus{
	"reserved":  app.ReservationReserved,
	"committed": app.ReservationCommitted,
	"released":  app.ReservationReleased,
	"restocked": app.ReservationRestocked,
	"expired":   app.ReservationExpired,
}

// reservationStatus maps inventory's status to the app's; a status it does
// not know is app.ReservationStatusUnknown, which holds no stock.
func reservationStatus(s string) app.ReservationStatus {
	return reservationStatuses[s] // the zero value is ReservationStatusUnknown
}

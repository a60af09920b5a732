package orderstest

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	cartv1 "github.com/mercato-dev/mercato/internal/gen/cart/v1"
	catalogv1 "github.com/mercato-dev/mercato/internal/gen/catalog/v1"
	inventoryv1 "github.com/mercato-dev/mercato/internal/gen/inventory/v1"
	paymentsv1 "github.com/mercato-dev/mercato/internal/gen/payments/v1"
)

// The client shims call a fake server in-process, so the orders adapters
// (and their error mapping) run unchanged without a network. What the
// client puts in its outgoing metadata reaches the server as incoming
// metadata, as over gRPC. Methods orders never calls are left nil.

// inProcess calls f as a server would see the call: a fresh context with
// the caller's deadline and cancellation and its outgoing metadata as
// incoming metadata, but none of the caller's context values (over gRPC, a
// principal in the caller's context does not travel either).
func inProcess[Req, Resp any](ctx context.Context, in Req, f func(context.Context, Req) (Resp, error)) (Resp, error) {
	md, _ := metadata.FromOutgoingContext(ctx)
	server, cancel := context.WithCancel(metadata.NewIncomingContext(context.Background(), md.Copy()))
	defer cancel()
	if dl, ok := ctx.Deadline(); ok {
		var cancelDeadline context.CancelFunc
		server, cancelDeadline = context.WithDeadline(server, dl)
		defer cancelDeadline()
	}
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	return f(server, in)
}

type inventoryClient struct {
	inventoryv1.InventoryServiceClient
	s inventoryv1.InventoryServiceServer
}

// InventoryClient returns an in-process client of s.
func InventoryClient(s inventoryv1.InventoryServiceServer) inventoryv1.InventoryServiceClient {
	return inventoryClient{s: s}
}

func (c inventoryClient) ReserveStock(ctx context.Context, in *inventoryv1.ReserveStockRequest, _ ...grpc.CallOption) (*inventoryv1.Reservation, error) {
	return inProcess(ctx, in, c.s.ReserveStock)
}

func (c inventoryClient) CommitReservation(ctx context.Context, in *inventoryv1.CommitReservationRequest, _ ...grpc.CallOption) (*inventoryv1.Reservation, error) {
	return inProcess(ctx, in, c.s.CommitReservation)
}

func (c inventoryClient) ReleaseReservation(ctx context.Context, in *inventoryv1.ReleaseReservationRequest, _ ...grpc.CallOption) (*inventoryv1.Reservation, error) {
	return inProcess(ctx, in, c.s.ReleaseReservation)
}

func (c inventoryClient) RestockOrder(ctx context.Context, in *inventoryv1.RestockOrderRequest, _ ...grpc.CallOption) (*inventoryv1.Reservation, error) {
	return inProcess(ctx, in, c.s.RestockOrder)
}

type paymentsClient struct {
	paymentsv1.PaymentsServiceClient
	s paymentsv1.PaymentsServiceServer
}

// PaymentsClient returns an in-process client of s.
func PaymentsClient(s paymentsv1.PaymentsServiceServer) paymentsv1.PaymentsServiceClient {
	return paymentsClient{s: s}
}

func (c paymentsClient) Authorize(ctx context.Context, in *paymentsv1.AuthorizeRequest, _ ...grpc.CallOption) (*paymentsv1.Payment, error) {
	return inProcess(ctx, in, c.s.Authorize)
}

func (c paymentsClient) Capture(ctx context.Context, in *paymentsv1.CaptureRequest, _ ...grpc.CallOption) (*paymentsv1.Payment, error) {
	return inProcess(ctx, in, c.s.Capture)
}

func (c paymentsClient) Void(ctx context.Context, in *paymentsv1.VoidRequest, _ ...grpc.CallOption) (*paymentsv1.Payment, error) {
	return inProcess(ctx, in, c.s.Void)
}

func (c paymentsClient) Refund(ctx context.Context, in *paymentsv1.RefundRequest, _ ...grpc.CallOption) (*paymentsv1.Payment, error) {
	return inProcess(ctx, in, c.s.Refund)
}

func (c paymentsClient) CheckPaymentToken(ctx context.Context, in *paymentsv1.CheckPaymentTokenRequest, _ ...grpc.CallOption) (*paymentsv1.PaymentMethod, error) {
	return inProcess(ctx, in, c.s.CheckPaymentToken)
}

type catalogClient struct {
	catalogv1.CatalogServiceClient
	s catalogv1.CatalogServiceServer
}

// CatalogClient returns an in-process client of s.
func CatalogClient(s catalogv1.CatalogServiceServer) catalogv1.CatalogServiceClient {
	return catalogClient{s: s}
}

func (c catalogClient) BatchGetProducts(ctx context.Context, in *catalogv1.BatchGetProductsRequest, _ ...grpc.CallOption) (*catalogv1.BatchGetProductsResponse, error) {
	return inProcess(ctx, in, c.s.BatchGetProducts)
}

type cartClient struct {
	cartv1.CartServiceClient
	s cartv1.CartServiceServer
}

// CartClient returns an in-process client of s.
func CartClient(s cartv1.CartServiceServer) cartv1.CartServiceClient { return cartClient{s: s} }

func (c cartClient) GetCart(ctx context.Context, in *cartv1.GetCartRequest, _ ...grpc.CallOption) (*cartv1.Cart, error) {
	return inProcess(ctx, in, c.s.GetCart)
}

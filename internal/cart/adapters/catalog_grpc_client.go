package adapters

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mercato-dev/mercato/internal/cart/app"
	"github.com/mercato-dev/mercato/internal/cart/domain"
	catalogv1 "github.com/mercato-dev/mercato/internal/gen/catalog/v1"
	"github.com/mercato-dev/mercato/internal/platform/auth"
)

// CatalogGRPCClient is the app.Catalog over the catalog service's gRPC API.
// Deadlines, retries and the circuit breaker come from the connection
// (resilience.Dial).
type CatalogGRPCClient struct {
	client catalogv1.CatalogServiceClient
}

var _ app.Catalog = (*CatalogGRPCClient)(nil)

// NewCatalogGRPCClient returns a client over conn.
func NewCatalogGRPCClient(conn grpc.ClientConnInterface) *CatalogGRPCClient {
	return &CatalogGRPCClient{client: catalogv1.NewCatalogServiceClient(conn)}
}

// ProductExists implements app.Catalog. GetProduct is public, but the
// caller's token is forwarded anyway: the call is made on their behalf,
// and the catalog may one day hide products from some callers.
func (c *CatalogGRPCClient) ProductExists(ctx context.Context, productID string) (bool, error) {
	if p, ok := auth.FromContext(ctx); ok && p.Token != "" {
		ctx = auth.OutgoingToken(ctx, p.Token)
	}
	_, err := c.client.GetProduct(ctx, &catalogv1.GetProductRequest{Id: productID})
	switch {
	case err == nil:
		return true, nil
	case status.Code(err) == codes.NotFound:
		return false, nil
	case ctx.Err() != nil:
		// The caller gave up; say so rather than blame the catalog.
		return false, ctx.Err()
	default:
		// The catalog's status is deliberately not wrapped: the server's
		// error mapping would find it and answer with the catalog's code
		// and message as if they were the cart's. Its text stays in the
		// message for the logs; the kind makes the answer Unavailable.
		return false, fmt.Errorf("%w: get product from catalog: %v", domain.ErrCatalogDown, err) //nolint:errorlint // see above
	}
}

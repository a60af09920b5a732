package adapters

import (
	"context"

	catalogv1 "github.com/mercato-dev/mercato/internal/gen/catalog/v1"
	"github.com/mercato-dev/mercato/internal/orders/app"
	"github.com/mercato-dev/mercato/internal/orders/domain"
)

// CatalogGRPCClient is the app.Catalog over the catalog's gRPC API.
type CatalogGRPCClient struct {
	c catalogv1.CatalogServiceClient
}

var _ app.Catalog = (*CatalogGRPCClient)(nil)

// NewCatalogGRPCClient returns the client over c.
func NewCatalogGRPCClient(c catalogv1.CatalogServiceClient) *CatalogGRPCClient {
	return &CatalogGRPCClient{c: c}
}

// Products implements app.Catalog.
func (c *CatalogGRPCClient) Products(ctx context.Context, ids []string) ([]domain.Product, error) {
	resp, err := c.c.BatchGetProducts(ctx, &catalogv1.BatchGetProductsRequest{Ids: ids})
	if err != nil {
		return nil, classify("batch get products", err)
	}
	out := make([]domain.Product, len(resp.GetProducts()))
	for i, p := range resp.GetProducts() {
		out[i] = domain.Product{
			ID: p.GetId(), SKU: p.GetSku(), Name: p.GetName(),
			PriceCents: int64(p.GetPriceCents()), Currency: p.GetCurrency(),
		}
	}
	return out, nil
}

// Package ports exposes the catalog over gRPC.
package ports

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mercato-dev/mercato/internal/catalog/app"
	"github.com/mercato-dev/mercato/internal/catalog/domain"
	catalogv1 "github.com/mercato-dev/mercato/internal/gen/catalog/v1"
)

// PublicMethods are the methods an anonymous caller may use; every other
// method needs a valid access token (and the use case decides the role).
var PublicMethods = []string{
	catalogv1.CatalogService_ListProducts_FullMethodName,
	catalogv1.CatalogService_GetProduct_FullMethodName,
	catalogv1.CatalogService_BatchGetProducts_FullMethodName,
}

// Metadata keys read and written by the server.
const (
	// IfMatchKey carries the client's If-Match header on UpdateProduct and
	// DeleteProduct (the gateway forwards the HTTP header under this key).
	IfMatchKey = "if-match"
	// ETagKey is set on the response header of GetProduct, CreateProduct
	// and UpdateProduct to the product's strong ETag, e.g. `"v3"`, and on a
	// precondition failure to the current one.
	ETagKey = "etag"
)

// GRPCServer implements catalogv1.CatalogServiceServer over the use cases.
// Authentication happens in the interceptor; authorisation in app.
type GRPCServer struct {
	catalogv1.UnimplementedCatalogServiceServer
	catalog *app.Catalog
}

// NewGRPCServer returns the gRPC server for c.
func NewGRPCServer(c *app.Catalog) *GRPCServer { return &GRPCServer{catalog: c} }

// ListProducts implements catalogv1.CatalogServiceServer.
func (s *GRPCServer) ListProducts(ctx context.Context, req *catalogv1.ListProductsRequest) (*catalogv1.ListProductsResponse, error) {
	page, err := s.catalog.ListProducts(ctx, app.ListProducts{
		Query: req.GetQ(), Category: req.GetCategory(), PageSize: int(req.GetPageSize()), PageToken: req.GetPageToken(),
	})
	if err != nil {
		return nil, err
	}
	return &catalogv1.ListProductsResponse{Products: toProtos(page.Products), NextPageToken: page.NextPageToken}, nil
}

// GetProduct implements catalogv1.CatalogServiceServer.
func (s *GRPCServer) GetProduct(ctx context.Context, req *catalogv1.GetProductRequest) (*catalogv1.Product, error) {
	p, err := s.catalog.GetProduct(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	setETag(ctx, p)
	return toProto(p), nil
}

// BatchGetProducts implements catalogv1.CatalogServiceServer.
func (s *GRPCServer) BatchGetProducts(ctx context.Context, req *catalogv1.BatchGetProductsRequest) (*catalogv1.BatchGetProductsResponse, error) {
	ps, err := s.catalog.BatchGetProducts(ctx, req.GetIds())
	if err != nil {
		return nil, err
	}
	return &catalogv1.BatchGetProductsResponse{Products: toProtos(ps)}, nil
}

// CreateProduct implements catalogv1.CatalogServiceServer.
func (s *GRPCServer) CreateProduct(ctx context.Context, req *catalogv1.CreateProductRequest) (*catalogv1.Product, error) {
	p, err := s.catalog.CreateProduct(ctx, domain.ProductInput{
		SKU: req.GetSku(), Name: req.GetName(), Description: req.GetDescription(),
		PriceCents: int64(req.GetPriceCents()), Currency: req.GetCurrency(),
		Categories: req.GetCategories(), ImageURL: req.GetImageUrl(),
	})
	if err != nil {
		return nil, err
	}
	setETag(ctx, p)
	return toProto(p), nil
}

// UpdateProduct implements catalogv1.CatalogServiceServer. The update mask
// uses proto field names, as the gateway derives it from the JSON body.
func (s *GRPCServer) UpdateProduct(ctx context.Context, req *catalogv1.UpdateProductRequest) (*catalogv1.Product, error) {
	v := req.GetProduct()
	p, err := s.catalog.UpdateProduct(ctx, app.UpdateProduct{
		ID:     req.GetId(),
		Fields: req.GetUpdateMask().GetPaths(),
		Values: domain.ProductInput{
			Name: v.GetName(), Description: v.GetDescription(), PriceCents: int64(v.GetPriceCents()),
			Currency: v.GetCurrency(), Categories: v.GetCategories(), ImageURL: v.GetImageUrl(),
		},
		IfMatch: ifMatch(ctx),
	})
	if err != nil {
		s.setCurrentETag(ctx, req.GetId(), err)
		return nil, err
	}
	setETag(ctx, p)
	return toProto(p), nil
}

// DeleteProduct implements catalogv1.CatalogServiceServer.
func (s *GRPCServer) DeleteProduct(ctx context.Context, req *catalogv1.DeleteProductRequest) (*emptypb.Empty, error) {
	if err := s.catalog.DeleteProduct(ctx, req.GetId(), ifMatch(ctx)); err != nil {
		s.setCurrentETag(ctx, req.GetId(), err)
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

func ifMatch(ctx context.Context) string {
	return strings.TrimSpace(strings.Join(metadata.ValueFromIncomingContext(ctx, IfMatchKey), ", "))
}

// setCurrentETag tells a client whose If-Match failed which version is
// current, so it can re-read or retry without guessing.
func (s *GRPCServer) setCurrentETag(ctx context.Context, id string, err error) {
	if !errors.Is(err, domain.ErrETagMismatch) {
		return
	}
	if p, getErr := s.catalog.GetProduct(ctx, id); getErr == nil {
		setETag(ctx, p)
	}
}

// setETag sends the ETag header. Failing to set it (the stream is already
// gone) is not worth failing a request that has otherwise succeeded.
func setETag(ctx context.Context, p domain.Product) {
	_ = grpc.SetHeader(ctx, metadata.Pairs(ETagKey, p.ETag()))
}

func toProto(p domain.Product) *catalogv1.Product {
	return &catalogv1.Product{
		Id: p.ID, Sku: p.SKU, Name: p.Name, Description: p.Description,
		PriceCents: int32(p.PriceCents), Currency: p.Currency, Categories: p.Categories,
		ImageUrl: p.ImageURL, CreatedAt: timestamppb.New(p.CreatedAt), UpdatedAt: timestamppb.New(p.UpdatedAt),
	}
}

func toProtos(ps []domain.Product) []*catalogv1.Product {
	out := make([]*catalogv1.Product, len(ps))
	for i, p := range ps {
		out[i] = toProto(p)
	}
	return out
}

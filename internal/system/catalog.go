package system

import (
	"net/http"

	"github.com/mercato-dev/mercato/internal/catalog"
	"github.com/mercato-dev/mercato/internal/gateway"
	catalogv1 "github.com/mercato-dev/mercato/internal/gen/catalog/v1"
	"github.com/mercato-dev/mercato/internal/platform/config"
)

func catalogService() Service {
	return Service{
		Name:     catalog.Name,
		Database: true,
		Streams:  catalog.Streams,
		API: &gateway.API{
			Register: catalogv1.RegisterCatalogServiceHandler,
			Statuses: map[string]int{
				catalogv1.CatalogService_CreateProduct_FullMethodName: http.StatusCreated,
				catalogv1.CatalogService_DeleteProduct_FullMethodName: http.StatusNoContent,
			},
			Retryable: []string{
				catalogv1.CatalogService_ListProducts_FullMethodName,
				catalogv1.CatalogService_GetProduct_FullMethodName,
				catalogv1.CatalogService_BatchGetProducts_FullMethodName,
			},
			Access: []gateway.Rule{
				{Methods: []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}, Prefix: "/api/v1/products", Access: gateway.AdminOnly},
				{Prefix: "/api/v1/products", Access: gateway.Anyone},
			},
		},
		Serve:   serve(readCatalog, catalog.New),
		Migrate: migrate(catalog.Name, catalog.Migrate),
	}
}

// readCatalog reads the catalog's configuration. Besides the common
// settings it reads:
//
//	MERCATO_PAGE_TOKEN_KEY  secret signing list page tokens, at least 16
//	                        bytes; set it, the same on every replica, when
//	                        running more than one                       (random per process)
func readCatalog(env *config.Env) (catalog.Config, error) {
	c := readCommon(env, catalog.Name)
	cfg := catalog.Config{
		Server:       c.Server,
		DB:           c.DB,
		Events:       c.Events,
		Keys:         c.Keys,
		PageTokenKey: env.String("MERCATO_PAGE_TOKEN_KEY", ""),
	}
	return cfg, checked(catalog.Name, env, cfg)
}

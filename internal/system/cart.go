package system

import (
	"net/http"

	"github.com/mercato-dev/mercato/internal/cart"
	"github.com/mercato-dev/mercato/internal/catalog"
	"github.com/mercato-dev/mercato/internal/gateway"
	cartv1 "github.com/mercato-dev/mercato/internal/gen/cart/v1"
	"github.com/mercato-dev/mercato/internal/platform/config"
)

func cartService() Service {
	return Service{
		Name:     cart.Name,
		Database: true,
		Calls:    []string{catalog.Name},
		API: &gateway.API{
			Register:  cartv1.RegisterCartServiceHandler,
			Statuses:  map[string]int{cartv1.CartService_ClearCart_FullMethodName: http.StatusNoContent},
			Retryable: []string{cartv1.CartService_GetCart_FullMethodName},
			Access:    []gateway.Rule{{Prefix: "/api/v1/cart", Access: gateway.SignedIn}},
		},
		Serve:   serve(readCart, cart.New),
		Migrate: migrate(cart.Name, cart.Migrate),
	}
}

// readCart reads the cart's configuration. Besides the common settings it
// reads:
//
//	REDIS_URL             keep carts in Redis instead of the database  (unset: SQL)
//	MERCATO_CATALOG_ADDR  catalog's gRPC target                        (catalog:9090)
func readCart(env *config.Env) (cart.Config, error) {
	c := readCommon(env, cart.Name)
	cfg := cart.Config{
		Server:      c.Server,
		DB:          c.DB,
		Events:      c.Events,
		Keys:        c.Keys,
		RedisURL:    env.String("REDIS_URL", ""),
		CatalogAddr: target(env, catalog.Name),
	}
	return cfg, checked(cart.Name, env, cfg)
}

package system

import (
	"net/http"

	"github.com/mercato-dev/mercato/internal/cart"
	"github.com/mercato-dev/mercato/internal/catalog"
	"github.com/mercato-dev/mercato/internal/gateway"
	ordersv1 "github.com/mercato-dev/mercato/internal/gen/orders/v1"
	"github.com/mercato-dev/mercato/internal/identity"
	"github.com/mercato-dev/mercato/internal/inventory"
	"github.com/mercato-dev/mercato/internal/orders"
	"github.com/mercato-dev/mercato/internal/payments"
	"github.com/mercato-dev/mercato/internal/platform/config"
)

func ordersService() Service {
	return Service{
		Name:     orders.Name,
		Database: true,
		Calls:    []string{catalog.Name, cart.Name, inventory.Name, payments.Name, identity.Name},
		Streams:  orders.Streams,
		API: &gateway.API{
			Register: ordersv1.RegisterOrdersServiceHandler,
			Statuses: map[string]int{ordersv1.OrdersService_PlaceOrder_FullMethodName: http.StatusAccepted},
			Retryable: []string{
				ordersv1.OrdersService_GetOrder_FullMethodName,
				ordersv1.OrdersService_ListOrders_FullMethodName,
				ordersv1.OrdersService_ListOrderEvents_FullMethodName,
			},
			Access: []gateway.Rule{{Prefix: "/api/v1/orders", Access: gateway.SignedIn}},
		},
		Serve:   serve(readOrders, orders.New),
		Migrate: migrate(orders.Name, orders.Migrate),
	}
}

// readOrders reads the orders configuration. Besides the common settings
// it reads:
//
//	MERCATO_CATALOG_ADDR         catalog gRPC target                         (catalog:9090)
//	MERCATO_CART_ADDR            cart gRPC target                            (cart:9090)
//	MERCATO_INVENTORY_ADDR       inventory gRPC target                       (inventory:9090)
//	MERCATO_PAYMENTS_ADDR        payments gRPC target                        (payments:9090)
//	MERCATO_IDENTITY_ADDR        identity gRPC target, for the service token (identity:9090)
//	MERCATO_SERVICE_SECRET       orders' client secret at identity           (required)
//	MERCATO_SAGA_DEADLINE        checkout time before the stock commit       (30s)
//	MERCATO_SAGA_WORKERS         orders the saga advances at once            (32)
//	MERCATO_SAGA_POLL_INTERVAL   how often the saga looks for due retries    (1s)
//	MERCATO_INSTANCE_ID          this replica's name in saga leases          (host name)
//	MERCATO_IDEMPOTENCY_KEY_TTL  how long an Idempotency-Key is remembered   (24h)
//	MERCATO_PAGE_TOKEN_KEY       HMAC key for list page tokens, >= 16 bytes  (random per process)
//	MERCATO_FAULT_CRASH_AFTER    test-only: SIGKILL the process right after  (unset: off)
//	                             the append of this event type commits, e.g.
//	                             "StockReserved"; "before:StockReserved"
//	                             kills it after the inventory call instead
//
// Targets are host:port, or dns:///name:port to balance over a headless
// Kubernetes service.
func readOrders(env *config.Env) (orders.Config, error) {
	c := readCommon(env, orders.Name)
	cfg := orders.Config{
		Server:            c.Server,
		DB:                c.DB,
		Events:            c.Events,
		Keys:              c.Keys,
		CatalogAddr:       target(env, catalog.Name),
		CartAddr:          target(env, cart.Name),
		InventoryAddr:     target(env, inventory.Name),
		PaymentsAddr:      target(env, payments.Name),
		IdentityAddr:      target(env, identity.Name),
		ServiceSecret:     env.String("MERCATO_SERVICE_SECRET", ""),
		SagaDeadline:      env.Duration("MERCATO_SAGA_DEADLINE", orders.DefaultSagaDeadline),
		SagaWorkers:       env.Int("MERCATO_SAGA_WORKERS", orders.DefaultSagaWorkers),
		SagaPollInterval:  env.Duration("MERCATO_SAGA_POLL_INTERVAL", 0),
		InstanceID:        env.String("MERCATO_INSTANCE_ID", ""),
		PageTokenKey:      env.String("MERCATO_PAGE_TOKEN_KEY", ""),
		IdempotencyKeyTTL: env.Duration("MERCATO_IDEMPOTENCY_KEY_TTL", orders.DefaultIdempotencyKeyTTL),
		CrashAfter:        env.String("MERCATO_FAULT_CRASH_AFTER", ""),
	}
	return cfg, checked(orders.Name, env, cfg)
}

package system

import (
	"context"
	"net/http"
	"runtime/debug"

	"github.com/mercato-dev/mercato/internal/cart"
	"github.com/mercato-dev/mercato/internal/catalog"
	"github.com/mercato-dev/mercato/internal/gateway"
	cartv1 "github.com/mercato-dev/mercato/internal/gen/cart/v1"
	catalogv1 "github.com/mercato-dev/mercato/internal/gen/catalog/v1"
	identityv1 "github.com/mercato-dev/mercato/internal/gen/identity/v1"
	inventoryv1 "github.com/mercato-dev/mercato/internal/gen/inventory/v1"
	notificationsv1 "github.com/mercato-dev/mercato/internal/gen/notifications/v1"
	ordersv1 "github.com/mercato-dev/mercato/internal/gen/orders/v1"
	paymentsv1 "github.com/mercato-dev/mercato/internal/gen/payments/v1"
	"github.com/mercato-dev/mercato/internal/identity"
	"github.com/mercato-dev/mercato/internal/inventory"
	"github.com/mercato-dev/mercato/internal/notifications"
	"github.com/mercato-dev/mercato/internal/orders"
	"github.com/mercato-dev/mercato/internal/payments"
	"github.com/mercato-dev/mercato/internal/platform/config"
)

// The entries of the table, one function each; Services lists them.

func identityService() Service {
	return Service{
		Name:     identity.Name,
		Database: true,
		Streams:  identity.Streams,
		API: &gateway.API{
			Register: identityv1.RegisterIdentityServiceHandler,
			Statuses: map[string]int{
				identityv1.IdentityService_Register_FullMethodName: http.StatusCreated,
				identityv1.IdentityService_Logout_FullMethodName:   http.StatusNoContent,
			},
			Retryable: []string{identityv1.IdentityService_GetMe_FullMethodName, identityv1.IdentityService_GetJWKS_FullMethodName},
			Access: []gateway.Rule{
				{Prefix: "/api/v1/auth/logout", Access: gateway.SignedIn},
				{Prefix: "/api/v1/auth", Access: gateway.Anyone},
				{Prefix: "/api/v1/me", Access: gateway.SignedIn},
				{Prefix: "/.well-known/jwks.json", Access: gateway.Anyone},
			},
		},
		Serve:   serve(readIdentity, identity.New),
		Migrate: migrate(identity.Name, identity.Migrate),
	}
}

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

func inventoryService() Service {
	return Service{
		Name:     inventory.Name,
		Database: true,
		API: &gateway.API{
			Register:  inventoryv1.RegisterInventoryServiceHandler,
			Retryable: []string{inventoryv1.InventoryService_GetStock_FullMethodName},
			Access:    []gateway.Rule{{Prefix: "/api/v1/inventory", Access: gateway.AdminOnly}},
		},
		Serve:   serve(readInventory, inventory.New),
		Migrate: migrate(inventory.Name, inventory.Migrate),
	}
}

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
				ordersv1.OrdersService_ListStuckOrders_FullMethodName,
			},
			Access: []gateway.Rule{
				{Prefix: "/api/v1/orders", Access: gateway.SignedIn},
				{Prefix: "/api/v1/admin/orders", Access: gateway.AdminOnly},
			},
		},
		Serve:   serve(readOrders, orders.New),
		Migrate: migrate(orders.Name, orders.Migrate),
	}
}

func paymentsService() Service {
	return Service{
		Name:     payments.Name,
		Database: true,
		Streams:  payments.Streams,
		API: &gateway.API{
			Register:  paymentsv1.RegisterPaymentsServiceHandler,
			Retryable: []string{paymentsv1.PaymentsService_ListPayments_FullMethodName},
			Access:    []gateway.Rule{{Prefix: "/api/v1/payments", Access: gateway.SignedIn}},
		},
		Serve:   serve(readPayments, payments.New),
		Migrate: migrate(payments.Name, payments.Migrate),
	}
}

func notificationsService() Service {
	return Service{
		Name:     notifications.Name,
		Database: true,
		API: &gateway.API{
			Register:  notificationsv1.RegisterNotificationsServiceHandler,
			Retryable: []string{notificationsv1.NotificationsService_ListNotifications_FullMethodName},
			Access:    []gateway.Rule{{Prefix: "/api/v1/notifications", Access: gateway.SignedIn}},
		},
		Serve:   serve(readNotifications, notifications.New),
		Migrate: migrate(notifications.Name, notifications.Migrate),
	}
}

// gatewayName is the gateway's name in the table.
const gatewayName = "gateway"

// gatewayService is the public edge in front of the services of backends
// that have a public API. It owns no data.
func gatewayService(backends []Service) Service {
	var upstreams []Service
	for _, s := range backends {
		if s.API != nil {
			upstreams = append(upstreams, s)
		}
	}
	calls := make([]string, len(upstreams))
	for i, u := range upstreams {
		calls[i] = u.Name
	}
	return Service{
		Name:  gatewayName,
		Calls: calls,
		Serve: func(ctx context.Context, env *config.Env, rt Runtime) error {
			cfg, err := readGateway(env, upstreams)
			if err != nil {
				return err
			}
			cfg.AccessLog = rt.LogOut
			if env.String("GOGC", "") == "" {
				debug.SetGCPercent(400)
			}
			g, err := gateway.New(ctx, cfg, rt.Logger)
			if err != nil {
				return err
			}
			return g.Run(ctx)
		},
	}
}

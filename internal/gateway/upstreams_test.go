package gateway

import (
	"net/http"

	cartv1 "github.com/mercato-dev/mercato/internal/gen/cart/v1"
	catalogv1 "github.com/mercato-dev/mercato/internal/gen/catalog/v1"
	identityv1 "github.com/mercato-dev/mercato/internal/gen/identity/v1"
	inventoryv1 "github.com/mercato-dev/mercato/internal/gen/inventory/v1"
	notificationsv1 "github.com/mercato-dev/mercato/internal/gen/notifications/v1"
	ordersv1 "github.com/mercato-dev/mercato/internal/gen/orders/v1"
	paymentsv1 "github.com/mercato-dev/mercato/internal/gen/payments/v1"
)

// testAPIs are the public APIs the gateway's tests serve. They describe
// mercato's services as the table of services does (internal/system, which
// the gateway's own tests cannot import: it imports the gateway); the
// table's tests check the real entries against a running gateway.
var testAPIs = []struct {
	name string
	api  API
}{
	{"identity", API{
		Register: identityv1.RegisterIdentityServiceHandler,
		Statuses: map[string]int{
			identityv1.IdentityService_Register_FullMethodName: http.StatusCreated,
			identityv1.IdentityService_Logout_FullMethodName:   http.StatusNoContent,
		},
		Retryable: []string{identityv1.IdentityService_GetMe_FullMethodName, identityv1.IdentityService_GetJWKS_FullMethodName},
		Access: []Rule{
			{Prefix: "/api/v1/auth/logout", Access: SignedIn},
			{Prefix: "/api/v1/auth", Access: Anyone},
			{Prefix: "/api/v1/me", Access: SignedIn},
			{Prefix: "/.well-known/jwks.json", Access: Anyone},
		},
	}},
	{"catalog", API{
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
		Access: []Rule{
			{Methods: []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}, Prefix: "/api/v1/products", Access: AdminOnly},
			{Prefix: "/api/v1/products", Access: Anyone},
		},
	}},
	{"inventory", API{
		Register:  inventoryv1.RegisterInventoryServiceHandler,
		Retryable: []string{inventoryv1.InventoryService_GetStock_FullMethodName},
		Access:    []Rule{{Prefix: "/api/v1/inventory", Access: AdminOnly}},
	}},
	{"cart", API{
		Register:  cartv1.RegisterCartServiceHandler,
		Statuses:  map[string]int{cartv1.CartService_ClearCart_FullMethodName: http.StatusNoContent},
		Retryable: []string{cartv1.CartService_GetCart_FullMethodName},
		Access:    []Rule{{Prefix: "/api/v1/cart", Access: SignedIn}},
	}},
	{"orders", API{
		Register: ordersv1.RegisterOrdersServiceHandler,
		Statuses: map[string]int{ordersv1.OrdersService_PlaceOrder_FullMethodName: http.StatusAccepted},
		Retryable: []string{
			ordersv1.OrdersService_GetOrder_FullMethodName,
			ordersv1.OrdersService_ListOrders_FullMethodName,
			ordersv1.OrdersService_ListOrderEvents_FullMethodName,
			ordersv1.OrdersService_ListStuckOrders_FullMethodName,
		},
		Access: []Rule{
			{Prefix: "/api/v1/orders", Access: SignedIn},
			{Prefix: "/api/v1/admin/orders", Access: AdminOnly},
		},
	}},
	{"payments", API{
		Register:  paymentsv1.RegisterPaymentsServiceHandler,
		Retryable: []string{paymentsv1.PaymentsService_ListPayments_FullMethodName},
		Access:    []Rule{{Prefix: "/api/v1/payments", Access: SignedIn}},
	}},
	{"notifications", API{
		Register:  notificationsv1.RegisterNotificationsServiceHandler,
		Retryable: []string{notificationsv1.NotificationsService_ListNotifications_FullMethodName},
		Access:    []Rule{{Prefix: "/api/v1/notifications", Access: SignedIn}},
	}},
}

// testUpstreams returns testAPIs' services at the targets target gives.
func testUpstreams(target func(name string) string) []Upstream {
	ups := make([]Upstream, len(testAPIs))
	for i, a := range testAPIs {
		ups[i] = Upstream{Name: a.name, Target: target(a.name), API: a.api}
	}
	return ups
}

// testUpstreamNames are testAPIs' service names, in order.
func testUpstreamNames() []string {
	names := make([]string, len(testAPIs))
	for i, a := range testAPIs {
		names[i] = a.name
	}
	return names
}

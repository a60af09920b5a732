package system

import (
	"github.com/mercato-dev/mercato/internal/gateway"
	inventoryv1 "github.com/mercato-dev/mercato/internal/gen/inventory/v1"
	"github.com/mercato-dev/mercato/internal/inventory"
	"github.com/mercato-dev/mercato/internal/platform/config"
)

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

// readInventory reads the inventory's configuration. Besides the common
// settings (it publishes no events, so NATS is not read) it reads:
//
//	MERCATO_RESERVATION_TTL    how long an uncommitted reservation holds stock (15m)
//	MERCATO_RESERVATION_SWEEP  how often expired reservations are released     (5s)
func readInventory(env *config.Env) (inventory.Config, error) {
	c := readCommon(env, inventory.Name)
	cfg := inventory.Config{
		Server:              c.Server,
		DB:                  c.DB,
		Keys:                c.Keys,
		ReservationTTL:      env.Duration("MERCATO_RESERVATION_TTL", inventory.DefaultReservationTTL),
		ExpirySweepInterval: env.Duration("MERCATO_RESERVATION_SWEEP", inventory.DefaultExpirySweepInterval),
	}
	return cfg, checked(inventory.Name, env, cfg)
}

package system

import (
	"errors"

	"github.com/mercato-dev/mercato/internal/gateway"
	paymentsv1 "github.com/mercato-dev/mercato/internal/gen/payments/v1"
	"github.com/mercato-dev/mercato/internal/payments"
	"github.com/mercato-dev/mercato/internal/platform/config"
)

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

// readPayments reads the payments configuration. Besides the common
// settings it reads the fake provider's fault knobs:
//
//	MERCATO_PAYMENTS_LATENCY       latency added to every provider call, 0..30s  (0s)
//	MERCATO_PAYMENTS_FAILURE_RATE  share of provider calls failing, 0..1         (0)
//	MERCATO_PAYMENTS_SEED          seed of the failure draws                     (random)
func readPayments(env *config.Env) (payments.Config, error) {
	c := readCommon(env, payments.Name)
	seed := env.Int("MERCATO_PAYMENTS_SEED", 0)
	cfg := payments.Config{
		Server:              c.Server,
		DB:                  c.DB,
		Events:              c.Events,
		Keys:                c.Keys,
		ProviderLatency:     env.Duration("MERCATO_PAYMENTS_LATENCY", 0),
		ProviderFailureRate: env.Float("MERCATO_PAYMENTS_FAILURE_RATE", 0),
		ProviderSeed:        uint64(max(seed, 0)),
	}
	var seedErr error
	if seed < 0 {
		seedErr = errors.New("MERCATO_PAYMENTS_SEED must not be negative")
	}
	return cfg, checked(payments.Name, env, cfg, seedErr)
}

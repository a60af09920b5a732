package orderstest_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/orders/adapters"
	"github.com/mercato-dev/mercato/internal/orders/orderstest"
)

// The fakes keep the contracts the real services keep (test/contract), as
// orders sees them: through its own gRPC adapters.

func TestInventoryFakeKeepsTheContract(t *testing.T) {
	orderstest.RunInventoryContract(t, func(t *testing.T) orderstest.InventoryUnderTest {
		fake := orderstest.NewInventory()
		return orderstest.InventoryUnderTest{
			Inventory: adapters.NewInventoryGRPCClient(orderstest.InventoryClient(fake)),
			SetOnHand: func(_ *testing.T, sku string, n int) { fake.SetOnHand(sku, n) },
		}
	})
}

func TestPaymentsFakeKeepsTheContract(t *testing.T) {
	orderstest.RunPaymentsContract(t, func(t *testing.T) orderstest.PaymentsUnderTest {
		fake := orderstest.NewPayments()
		return orderstest.PaymentsUnderTest{
			Payments: adapters.NewPaymentsGRPCClient(orderstest.PaymentsClient(fake)),
			Interrupt: func(t *testing.T, method string, call func() error) error {
				calls := fake.Calls(method)
				fake.StallNext(method, 1)
				err := call()
				require.Equal(t, calls+1, fake.Calls(method))
				return err
			},
		}
	})
}

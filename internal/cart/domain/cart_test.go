package domain_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/cart/domain"
)

func TestNewSetItem(t *testing.T) {
	const id = "0190f3a4-5b6c-7d8e-9f00-112233445566"
	tests := []struct {
		name      string
		productID string
		quantity  int
		want      domain.SetItem
		wantErr   error
	}{
		{name: "zero removes", productID: id, quantity: 0, want: domain.SetItem{ProductID: id}},
		{name: "one", productID: id, quantity: 1, want: domain.SetItem{ProductID: id, Quantity: 1}},
		{name: "the most", productID: id, quantity: 99, want: domain.SetItem{ProductID: id, Quantity: 99}},
		{name: "upper-case id is canonicalised", productID: " 0190F3A4-5B6C-7D8E-9F00-112233445566 ", quantity: 2,
			want: domain.SetItem{ProductID: id, Quantity: 2}},
		{name: "negative", productID: id, quantity: -1, wantErr: domain.ErrQuantityRange},
		{name: "too many", productID: id, quantity: 100, wantErr: domain.ErrQuantityRange},
		{name: "no product", productID: " ", quantity: 1, wantErr: domain.ErrProductIDRequired},
		{name: "not a uuid", productID: "kettle", quantity: 1, wantErr: domain.ErrProductIDInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := domain.NewSetItem(tt.productID, tt.quantity)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
			require.Equal(t, tt.quantity == 0, got.Removes())
		})
	}
}

func TestErrorMessagesNameTheField(t *testing.T) {
	require.Contains(t, domain.ErrQuantityRange.Error(), "quantity")
	require.Contains(t, domain.ErrProductIDInvalid.Error(), "product_id")
	require.Equal(t, "cart is full (50 distinct items)", domain.ErrCartFull.Error())
	require.Equal(t, "product not found", domain.ErrProductNotFound.Error())
}

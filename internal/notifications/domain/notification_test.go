package domain_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/notifications/domain"
)

func TestFormatMoney(t *testing.T) {
	tests := []struct {
		cents    int64
		currency string
		want     string
	}{
		{1250, "USD", "$12.50"},
		{5, "USD", "$0.05"},
		{0, "EUR", "€0.00"},
		{123456789, "usd", "$1,234,567.89"},
		{100000, "GBP", "£1,000.00"},
		{1250, "JPY", "¥1,250"},
		{999, "AUD", "A$9.99"},
		{1250, "CHF", "12.50 CHF"},
		{123456, "SEK", "1,234.56 SEK"},
		{-1250, "USD", "-$12.50"},
		{1250, "XTS", "12.50 XTS"},
		{1250, "", "12.50"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, domain.FormatMoney(tt.cents, tt.currency), "%d %s", tt.cents, tt.currency)
	}
}

func ada() domain.Recipient {
	return domain.Recipient{UserID: "u-1", Email: "ada@example.com", Name: "Ada"}
}

const orderID = "0190f3a4-5b6c-7d8e-9f00-112233445566"

func confirmedOrder() domain.OrderEvent {
	return domain.OrderEvent{
		OrderID: orderID, UserID: "u-1", TotalCents: 11448, Currency: "USD",
		Items: []domain.OrderItem{
			{ProductID: "p-1", Name: "Pour-over kettle", Quantity: 2, UnitPriceCents: 5499, LineTotalCents: 10998},
			{ProductID: "p-2", SKU: "FILTER-100", Quantity: 1, UnitPriceCents: 450},
			{ProductID: "p-3", Quantity: 1},
		},
	}
}

func TestWelcomeMessage(t *testing.T) {
	m := domain.WelcomeMessage(ada())
	require.Equal(t, "Welcome to mercato, Ada", m.Subject)
	require.True(t, strings.HasPrefix(m.Body, "Hi Ada,\n\n"), m.Body)
	require.Contains(t, m.Body, "ada@example.com")

	anonymous := domain.WelcomeMessage(domain.Recipient{UserID: "u-2"})
	require.Equal(t, "Welcome to mercato", anonymous.Subject)
	require.True(t, strings.HasPrefix(anonymous.Body, "Hello,\n\n"))
}

func TestNamesCannotBreakTheSubject(t *testing.T) {
	m := domain.WelcomeMessage(domain.Recipient{Name: "Ada\r\nBcc: all@example.com\x00", Email: "ada@example.com"})
	require.Equal(t, "Welcome to mercato, Ada Bcc: all@example.com", m.Subject)
	long := domain.WelcomeMessage(domain.Recipient{Name: strings.Repeat("é", 300)})
	require.Equal(t, "Welcome to mercato, "+strings.Repeat("é", 100)+"…", long.Subject)
}

func TestOrderConfirmedMessage(t *testing.T) {
	m := domain.OrderConfirmedMessage(ada(), confirmedOrder())
	require.Equal(t, "Your order "+orderID+" is confirmed", m.Subject)
	require.Equal(t, "Hi Ada,\n\n"+
		"Thank you for your order. Order "+orderID+" is confirmed and your payment has been taken.\n\n"+
		"  2 × Pour-over kettle  $109.98\n"+
		"  1 × FILTER-100  $4.50\n"+
		"  1 × product p-3\n\n"+
		"Total: $114.48\n\n"+
		"— mercato\n", m.Body)
}

func TestOrderCancelledMessage(t *testing.T) {
	o := confirmedOrder()
	o.Reason = "payment declined: insufficient funds"
	m := domain.OrderCancelledMessage(ada(), o)
	require.Equal(t, "Your order "+orderID+" was cancelled", m.Subject)
	require.Contains(t, m.Body, "Reason: payment declined: insufficient funds\n")
	require.NotContains(t, m.Body, "refunded")

	o.Refunded = true
	m = domain.OrderCancelledMessage(ada(), o)
	require.Contains(t, m.Body, "The $114.48 you paid will be refunded")
}

func TestOrderRefundedMessage(t *testing.T) {
	o := confirmedOrder()
	m := domain.OrderRefundedMessage(ada(), o)
	require.Equal(t, "Your refund for order "+orderID+" is on its way", m.Subject)
	require.Contains(t, m.Body, "We have refunded $114.48 for order "+orderID)

	o.AmountCents = 500
	require.Contains(t, domain.OrderRefundedMessage(ada(), o).Body, "We have refunded $5.00 for order")
}

func TestOrderRejectedMessage(t *testing.T) {
	o := confirmedOrder()
	o.Reason = "out of stock: KETTLE-1"
	m := domain.OrderRejectedMessage(domain.Recipient{UserID: "u-1"}, o)
	require.Equal(t, "Your order "+orderID+" could not be placed", m.Subject)
	require.Equal(t, "Hello,\n\nSorry, we could not place your order "+orderID+".\n"+
		"Reason: out of stock: KETTLE-1\nYou have not been charged.\n\n— mercato\n", m.Body)
}

func TestDecode(t *testing.T) {
	u, err := domain.DecodeUserRegistered([]byte(`{"user_id":"u-1","email":"ada@example.com","name":"Ada","registered_at":"2026-01-02T03:04:05Z"}`))
	require.NoError(t, err)
	require.Equal(t, domain.UserRegistered{UserID: "u-1", Email: "ada@example.com", Name: "Ada"}, u)

	o, err := domain.DecodeOrderEvent(domain.SubjectOrderConfirmed, []byte(`{"order_id":"o-1","user_id":"u-1","total_cents":1250,"currency":"USD",
		"items":[{"product_id":"p-1","sku":"K-1","name":"Kettle","quantity":1,"unit_price_cents":1250,"line_total_cents":1250}],"extra":true}`))
	require.NoError(t, err)
	require.Equal(t, "o-1", o.OrderID)
	require.Equal(t, int64(1250), o.Items[0].LineTotalCents)

	for _, bad := range []string{`{`, `{"email":"x@example.com"}`, `[]`, `{"user_id":"  "}`} {
		_, err := domain.DecodeUserRegistered([]byte(bad))
		require.ErrorIs(t, err, domain.ErrMalformedEvent, bad)
	}
	for _, bad := range []string{`{`, `{"user_id":"u-1"}`, `{"order_id":"o-1"}`, `{"order_id":"o-1","user_id":"u-1","total_cents":"12"}`} {
		_, err := domain.DecodeOrderEvent(domain.SubjectOrderRejected, []byte(bad))
		require.ErrorIs(t, err, domain.ErrMalformedEvent, bad)
	}
}

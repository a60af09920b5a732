package adapters

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/orders/app"
)

// TestStatusesMapOnce checks that every status the neighbours send maps to
// the app's constant of the same name, and that anything else is unknown
// (which holds nothing and is not a decline).
func TestStatusesMapOnce(t *testing.T) {
	for wire, want := range map[string]app.ReservationStatus{
		"reserved": app.ReservationReserved, "committed": app.ReservationCommitted,
		"released": app.ReservationReleased, "restocked": app.ReservationRestocked,
		"expired": app.ReservationExpired, "": app.ReservationStatusUnknown, "held": app.ReservationStatusUnknown,
	} {
		got := reservationStatus(wire)
		require.Equal(t, want, got, wire)
		if want != app.ReservationStatusUnknown {
			require.Equal(t, wire, got.String())
		}
	}
	require.True(t, reservationStatus("reserved").HoldsStock())
	require.True(t, reservationStatus("committed").HoldsStock())
	require.False(t, reservationStatus("released").HoldsStock())
	require.False(t, reservationStatus("Reserved").HoldsStock(), "statuses are matched exactly")

	for wire, want := range map[string]app.PaymentStatus{
		"authorized": app.PaymentAuthorized, "declined": app.PaymentDeclined, "captured": app.PaymentCaptured,
		"voided": app.PaymentVoided, "refunded": app.PaymentRefunded, "pending": app.PaymentStatusUnknown,
	} {
		got := paymentStatus(wire)
		require.Equal(t, want, got, wire)
		if want != app.PaymentStatusUnknown {
			require.Equal(t, wire, got.String())
		}
	}
}

package ports

import (
	"context"
	"log/slog"
	"time"

	"github.com/mercato-dev/mercato/internal/inventory/app"
	"github.com/mercato-dev/mercato/internal/platform/server"
)

// ExpirySweeper releases overdue reservations every interval. Several
// replicas may each run one: a reservation is expired once whichever
// replica gets to it.
type ExpirySweeper struct {
	inventory *app.Inventory
	interval  time.Duration
	log       *slog.Logger
}

// NewExpirySweeper returns a sweeper over inv.
func NewExpirySweeper(inv *app.Inventory, interval time.Duration, logger *slog.Logger) *ExpirySweeper {
	return &ExpirySweeper{inventory: inv, interval: interval, log: logger}
}

// Run sweeps at once and then every interval until ctx is cancelled, and
// returns nil. A failed sweep is logged and tried again at the next tick:
// a database outage shows in readiness, not as a stopped process.
func (s *ExpirySweeper) Run(ctx context.Context) error {
	s.sweep(ctx)
	return server.Every(s.interval, s.sweep)(ctx)
}

func (s *ExpirySweeper) sweep(ctx context.Context) {
	n, err := s.inventory.ExpireReservations(ctx)
	switch {
	case err != nil && ctx.Err() == nil:
		s.log.WarnContext(ctx, "expiry sweep failed", "error", err.Error(), "expired", n)
	case n > 0:
		s.log.InfoContext(ctx, "reservations expired", "count", n)
	}
}

package ports

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/mercato-dev/mercato/internal/notifications/app"
	"github.com/mercato-dev/mercato/internal/notifications/domain"
	"github.com/mercato-dev/mercato/internal/platform/events"
)

// Durable consumer names, one per stream read.
const (
	UserEventsConsumer  = "notifications-user-events"
	OrderEventsConsumer = "notifications-order-events"
)

// Retry is how a failing delivery is retried: MaxDeliver attempts in all
// (then the event goes to the dead-letter stream), waiting Backoff between
// them. The zero value takes the events package's defaults.
type Retry struct {
	MaxDeliver int
	Backoff    []time.Duration
}

// ConsumerConfigs are the durable consumers notifications runs: the USERS
// stream for user.registered, and the ORDERS stream for the order outcomes
// a customer hears about.
func ConsumerConfigs(r Retry) []events.ConsumerConfig {
	return []events.ConsumerConfig{
		{
			Name:       UserEventsConsumer,
			Subjects:   []string{domain.SubjectUserRegistered},
			MaxDeliver: r.MaxDeliver,
			Backoff:    r.Backoff,
		},
		{
			Name: OrderEventsConsumer,
			Subjects: []string{
				domain.SubjectOrderConfirmed, domain.SubjectOrderCancelled,
				domain.SubjectOrderRefunded, domain.SubjectOrderRejected,
			},
			MaxDeliver: r.MaxDeliver,
			Backoff:    r.Backoff,
		},
	}
}

// EventHandler records and delivers the notification of each event. The
// consumer has claimed the event id in tx before calling it, so a
// redelivery of an event whose notification committed never gets here and
// sends nothing. An unreadable payload goes to the dead-letter stream at
// once; a failed delivery is retried.
func EventHandler(n *app.Notifications) events.Handler {
	return func(ctx context.Context, tx *sql.Tx, msg events.Message) error {
		err := n.HandleEvent(ctx, tx, app.Event{ID: msg.ID, Subject: msg.Subject, Payload: msg.Payload})
		if errors.Is(err, domain.ErrMalformedEvent) {
			return events.Permanent(err)
		}
		return err
	}
}

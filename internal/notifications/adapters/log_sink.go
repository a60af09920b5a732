package adapters

import (
	"context"
	"log/slog"

	"github.com/mercato-dev/mercato/internal/notifications/app"
	"github.com/mercato-dev/mercato/internal/notifications/domain"
)

// LogSink "sends" a notification by logging it: the default sink, where
// running mercato locally shows the emails it would send. A repeated Send
// after a crash logs the line again, which is harmless.
type LogSink struct {
	log *slog.Logger
}

var _ app.Sink = (*LogSink)(nil)

// NewLogSink returns a sink logging to logger.
func NewLogSink(logger *slog.Logger) *LogSink { return &LogSink{log: logger} }

// Send implements app.Sink. It never fails.
func (s *LogSink) Send(ctx context.Context, n domain.Notification) error {
	s.log.InfoContext(ctx, "notification sent",
		"notification_id", n.ID, "event_id", n.EventID, "user_id", n.UserID, "kind", n.Kind,
		"channel", n.Channel, "recipient", n.Recipient, "subject", n.Subject, "body", n.Body)
	return nil
}

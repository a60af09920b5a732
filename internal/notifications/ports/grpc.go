// Package ports exposes the notifications over gRPC and feeds them events.
package ports

import (
	"context"

	"google.golang.org/protobuf/types/known/timestamppb"

	notificationsv1 "github.com/mercato-dev/mercato/internal/gen/notifications/v1"
	"github.com/mercato-dev/mercato/internal/notifications/app"
	"github.com/mercato-dev/mercato/internal/notifications/domain"
)

// GRPCServer implements notificationsv1.NotificationsServiceServer over the
// use cases. Its only method needs an authenticated caller.
type GRPCServer struct {
	notificationsv1.UnimplementedNotificationsServiceServer
	notifications *app.Notifications
}

// NewGRPCServer returns the gRPC server for n.
func NewGRPCServer(n *app.Notifications) *GRPCServer { return &GRPCServer{notifications: n} }

// ListNotifications implements notificationsv1.NotificationsServiceServer.
func (s *GRPCServer) ListNotifications(ctx context.Context, req *notificationsv1.ListNotificationsRequest) (*notificationsv1.ListNotificationsResponse, error) {
	page, err := s.notifications.ListNotifications(ctx, app.ListNotifications{
		PageSize: int(req.GetPageSize()), PageToken: req.GetPageToken(),
	})
	if err != nil {
		return nil, err
	}
	out := &notificationsv1.ListNotificationsResponse{
		Notifications: make([]*notificationsv1.Notification, len(page.Notifications)),
		NextPageToken: page.NextPageToken,
	}
	for i, n := range page.Notifications {
		out.Notifications[i] = toProto(n)
	}
	return out, nil
}

func toProto(n domain.Notification) *notificationsv1.Notification {
	return &notificationsv1.Notification{
		Id: n.ID, UserId: n.UserID, Kind: n.Kind, Subject: n.Subject, Body: n.Body,
		Channel: n.Channel, Recipient: n.Recipient, CreatedAt: timestamppb.New(n.CreatedAt),
	}
}

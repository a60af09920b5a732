package system

import (
	"github.com/mercato-dev/mercato/internal/gateway"
	notificationsv1 "github.com/mercato-dev/mercato/internal/gen/notifications/v1"
	"github.com/mercato-dev/mercato/internal/notifications"
	"github.com/mercato-dev/mercato/internal/platform/config"
)

func notificationsService() Service {
	return Service{
		Name:     notifications.Name,
		Database: true,
		API: &gateway.API{
			Register:  notificationsv1.RegisterNotificationsServiceHandler,
			Retryable: []string{notificationsv1.NotificationsService_ListNotifications_FullMethodName},
			Access:    []gateway.Rule{{Prefix: "/api/v1/notifications", Access: gateway.SignedIn}},
		},
		Serve:   serve(readNotifications, notifications.New),
		Migrate: migrate(notifications.Name, notifications.Migrate),
	}
}

// readNotifications reads the notifications configuration. Besides the
// common settings it reads:
//
//	MERCATO_NOTIFICATIONS_FILE  append every notification to this file as JSON lines (unset: log)
//	MERCATO_PAGE_TOKEN_KEY      HMAC key for list page tokens, >= 16 bytes           (random per process)
func readNotifications(env *config.Env) (notifications.Config, error) {
	c := readCommon(env, notifications.Name)
	cfg := notifications.Config{
		Server:       c.Server,
		DB:           c.DB,
		Events:       c.Events,
		Keys:         c.Keys,
		SinkFile:     env.String("MERCATO_NOTIFICATIONS_FILE", ""),
		PageTokenKey: env.String("MERCATO_PAGE_TOKEN_KEY", ""),
	}
	return cfg, checked(notifications.Name, env, cfg)
}

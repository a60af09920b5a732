package app_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/notifications"
	"github.com/mercato-dev/mercato/internal/notifications/adapters"
	"github.com/mercato-dev/mercato/internal/notifications/app"
	"github.com/mercato-dev/mercato/internal/notifications/domain"
	"github.com/mercato-dev/mercato/internal/platform/apperr"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
)

// recordingSink keeps what it delivered; fail, when set, decides whether a
// Send fails instead.
type recordingSink struct {
	mu        sync.Mutex
	delivered []domain.Notification
	fail      func(domain.Notification) error
}

func (s *recordingSink) Send(_ context.Context, n domain.Notification) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		if err := s.fail(n); err != nil {
			return err
		}
	}
	s.delivered = append(s.delivered, n)
	return nil
}

func (s *recordingSink) sent() []domain.Notification {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]domain.Notification(nil), s.delivered...)
}

type fixture struct {
	db   *db.DB
	app  *app.Notifications
	sink *recordingSink
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	d := dbtest.Open(t, dbtest.SQLiteURL(t))
	require.NoError(t, notifications.MigrateDB(t.Context(), d))
	sink := &recordingSink{}
	return &fixture{
		db: d, sink: sink,
		app: app.New(adapters.NewNotificationSQLRepository(d), sink, []byte("app-test-page-token-key-0123456")),
	}
}

// handle runs HandleEvent as the consumer does: in a transaction that
// commits only when it succeeds.
func (f *fixture) handle(t *testing.T, eventID, subject string, payload any) error {
	t.Helper()
	raw, err := json.Marshal(payload)
	require.NoError(t, err)
	return f.db.InTx(t.Context(), func(tx *sql.Tx) error {
		return f.app.HandleEvent(t.Context(), tx, app.Event{ID: eventID, Subject: subject, Payload: raw})
	})
}

func (f *fixture) list(t *testing.T, ctx context.Context, q app.ListNotifications) app.NotificationPage {
	t.Helper()
	page, err := f.app.ListNotifications(ctx, q)
	require.NoError(t, err)
	return page
}

func as(ctx context.Context, userID, role string) context.Context {
	return auth.WithPrincipal(ctx, auth.Principal{UserID: userID, Role: role})
}

func registered(userID, email, name string) map[string]any {
	return map[string]any{"user_id": userID, "email": email, "name": name, "registered_at": "2026-01-02T03:04:05Z"}
}

func order(userID, orderID string, extra map[string]any) map[string]any {
	o := map[string]any{
		"order_id": orderID, "user_id": userID, "total_cents": 1250, "currency": "USD",
		"items": []map[string]any{{"product_id": uuid.NewString(), "sku": "KETTLE-1", "name": "Kettle",
			"quantity": 1, "unit_price_cents": 1250, "line_total_cents": 1250}},
	}
	for k, v := range extra {
		o[k] = v
	}
	return o
}

func TestEachEventNotifiesItsUser(t *testing.T) {
	f := newFixture(t)
	ada, orderID, rejectedID := uuid.NewString(), uuid.NewString(), uuid.NewString()
	require.NoError(t, f.handle(t, "e1", domain.SubjectUserRegistered, registered(ada, "ada@example.com", "Ada")))
	require.NoError(t, f.handle(t, "e2", domain.SubjectOrderConfirmed, order(ada, orderID, nil)))
	require.NoError(t, f.handle(t, "e3", domain.SubjectOrderCancelled, order(ada, orderID, map[string]any{"reason": "requested by customer", "refunded": true})))
	require.NoError(t, f.handle(t, "e4", domain.SubjectOrderRefunded, order(ada, orderID, nil)))
	require.NoError(t, f.handle(t, "e5", domain.SubjectOrderRejected, order(ada, rejectedID, map[string]any{"reason": "out of stock"})))

	page := f.list(t, as(t.Context(), ada, auth.RoleCustomer), app.ListNotifications{})
	var subjects []string
	for _, n := range page.Notifications {
		subjects = append(subjects, n.Subject)
		require.Equal(t, ada, n.UserID)
		require.Equal(t, "ada@example.com", n.Recipient, "the email from sign-up is used for orders")
		require.Equal(t, domain.ChannelEmail, n.Channel)
		require.True(t, strings.HasPrefix(n.Body, "Hi Ada,"), "the name from sign-up is used for orders: %q", n.Body)
	}
	require.Equal(t, []string{
		"Your order " + rejectedID + " could not be placed",
		"Your refund for order " + orderID + " is on its way",
		"Your order " + orderID + " was cancelled",
		"Your order " + orderID + " is confirmed",
		"Welcome to mercato, Ada",
	}, subjects, "newest first")
	require.Contains(t, page.Notifications[3].Body, "1 × Kettle  $12.50")
	require.Contains(t, page.Notifications[3].Body, "Total: $12.50")
	require.Contains(t, page.Notifications[2].Body, "Reason: requested by customer")
	require.Equal(t, domain.SubjectOrderConfirmed, page.Notifications[3].Kind)
	require.Len(t, f.sink.sent(), 5, "every notification is delivered")
}

func TestOrderEmailWinsOverTheRememberedOne(t *testing.T) {
	f := newFixture(t)
	bob := uuid.NewString()
	require.NoError(t, f.handle(t, "e1", domain.SubjectOrderConfirmed, order(bob, uuid.NewString(), nil)))
	require.NoError(t, f.handle(t, "e2", domain.SubjectOrderConfirmed, order(bob, uuid.NewString(), map[string]any{"email": "bob@example.com"})))
	sent := f.sink.sent()
	require.Equal(t, "", sent[0].Recipient, "nothing known about Bob yet")
	require.True(t, strings.HasPrefix(sent[0].Body, "Hello,"))
	require.Equal(t, "bob@example.com", sent[1].Recipient)
}

func TestAnEventIsNotifiedOnce(t *testing.T) {
	f := newFixture(t)
	ada := uuid.NewString()
	require.NoError(t, f.handle(t, "e1", domain.SubjectUserRegistered, registered(ada, "ada@example.com", "Ada")))
	// Had processed_events lost the event, the notification still stops it.
	require.NoError(t, f.handle(t, "e1", domain.SubjectUserRegistered, registered(ada, "ada@example.com", "Ada")))
	require.Len(t, f.sink.sent(), 1)
	require.Len(t, f.list(t, as(t.Context(), ada, auth.RoleCustomer), app.ListNotifications{}).Notifications, 1)
}

func TestAFailedDeliveryStoresNothing(t *testing.T) {
	f := newFixture(t)
	ada := uuid.NewString()
	down := errors.New("smtp: connection refused")
	f.sink.fail = func(domain.Notification) error { return down }
	require.ErrorIs(t, f.handle(t, "e1", domain.SubjectUserRegistered, registered(ada, "ada@example.com", "Ada")), down)
	require.Empty(t, f.list(t, as(t.Context(), ada, auth.RoleCustomer), app.ListNotifications{}).Notifications)

	f.sink.fail = nil
	require.NoError(t, f.handle(t, "e1", domain.SubjectUserRegistered, registered(ada, "ada@example.com", "Ada")))
	require.Len(t, f.sink.sent(), 1)
}

func TestUnreadableEvents(t *testing.T) {
	f := newFixture(t)
	for _, tt := range []struct {
		subject string
		payload any
	}{
		{domain.SubjectUserRegistered, map[string]any{"email": "x@example.com"}},
		{domain.SubjectOrderConfirmed, map[string]any{"user_id": "u-1"}},
		{domain.SubjectOrderConfirmed, "not an object"},
		{"order.placed", order("u-1", "o-1", nil)},
	} {
		err := f.handle(t, uuid.NewString(), tt.subject, tt.payload)
		require.ErrorIs(t, err, domain.ErrMalformedEvent, "%s %v", tt.subject, tt.payload)
	}
	require.Empty(t, f.sink.sent())
}

func TestListPagination(t *testing.T) {
	f := newFixture(t)
	ada := uuid.NewString()
	for range 25 {
		require.NoError(t, f.handle(t, uuid.NewString(), domain.SubjectOrderConfirmed, order(ada, uuid.NewString(), nil)))
	}
	ctx := as(t.Context(), ada, auth.RoleCustomer)

	first := f.list(t, ctx, app.ListNotifications{})
	require.Len(t, first.Notifications, app.DefaultPageSize)
	require.NotEmpty(t, first.NextPageToken)

	var seen []string
	token := ""
	for {
		page := f.list(t, ctx, app.ListNotifications{PageSize: 10, PageToken: token})
		for _, n := range page.Notifications {
			seen = append(seen, n.ID)
		}
		if page.NextPageToken == "" {
			break
		}
		token = page.NextPageToken
	}
	require.Len(t, seen, 25)
	for i := 1; i < len(seen); i++ {
		require.Greater(t, seen[i-1], seen[i], "newest first, no repeats")
	}

	all := f.list(t, ctx, app.ListNotifications{PageSize: 100})
	require.Len(t, all.Notifications, 25)
	require.Empty(t, all.NextPageToken)
}

func TestListRefusesBadPages(t *testing.T) {
	f := newFixture(t)
	ada, bob := uuid.NewString(), uuid.NewString()
	for range 3 {
		require.NoError(t, f.handle(t, uuid.NewString(), domain.SubjectOrderConfirmed, order(ada, uuid.NewString(), nil)))
	}
	asAda := as(t.Context(), ada, auth.RoleCustomer)
	for _, size := range []int{-1, 101} {
		_, err := f.app.ListNotifications(asAda, app.ListNotifications{PageSize: size})
		require.ErrorIs(t, err, app.ErrPageSize)
		require.Equal(t, apperr.Invalid, apperr.KindOf(err))
	}
	token := f.list(t, asAda, app.ListNotifications{PageSize: 1}).NextPageToken
	require.NotEmpty(t, token)

	forged := token[:len(token)-2] + "AA"
	if forged == token {
		forged = token[:len(token)-2] + "BB"
	}
	for _, bad := range []string{"garbage", "a.b", forged, strings.Replace(token, ".", "x.", 1)} {
		_, err := f.app.ListNotifications(asAda, app.ListNotifications{PageToken: bad})
		require.ErrorIs(t, err, app.ErrInvalidPageToken, bad)
	}
	_, err := f.app.ListNotifications(as(t.Context(), bob, auth.RoleCustomer), app.ListNotifications{PageToken: token})
	require.ErrorIs(t, err, app.ErrInvalidPageToken, "a token is only good for its own user")
}

func TestEveryoneSeesOnlyTheirOwn(t *testing.T) {
	f := newFixture(t)
	ada, admin := uuid.NewString(), uuid.NewString()
	require.NoError(t, f.handle(t, "e1", domain.SubjectUserRegistered, registered(ada, "ada@example.com", "Ada")))
	require.NoError(t, f.handle(t, "e2", domain.SubjectUserRegistered, registered(admin, "root@example.com", "Root")))

	mine := f.list(t, as(t.Context(), admin, auth.RoleAdmin), app.ListNotifications{})
	require.Len(t, mine.Notifications, 1)
	require.Equal(t, admin, mine.Notifications[0].UserID, "an admin sees what was sent to them, not to everyone")

	stranger := f.list(t, as(t.Context(), uuid.NewString(), auth.RoleCustomer), app.ListNotifications{})
	require.Empty(t, stranger.Notifications)

	_, err := f.app.ListNotifications(t.Context(), app.ListNotifications{})
	require.ErrorIs(t, err, auth.ErrMissingToken)
}

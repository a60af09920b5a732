// Package app holds the notifications' use cases: turning an event into
// exactly one notification for its user and delivering it, and listing a
// user's own notifications.
package app

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/mercato-dev/mercato/internal/notifications/domain"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/pagination"
)

// Paging limits.
const (
	DefaultPageSize = pagination.DefaultPageSize
	MaxPageSize     = pagination.MaxPageSize
)

// NotificationRepository stores notifications and what is known about
// their recipients. Implementations are safe for concurrent use. Methods
// taking tx work inside the event consumer's transaction, which also
// records the event as processed, so their writes commit if and only if it
// does.
type NotificationRepository interface {
	// RememberRecipient records (or replaces) r's email address and name.
	RememberRecipient(ctx context.Context, tx *sql.Tx, r domain.Recipient) error
	// Recipient returns what is known about userID; false when nothing.
	Recipient(ctx context.Context, tx *sql.Tx, userID string) (domain.Recipient, bool, error)
	// Insert stores n, unless a notification for n.EventID exists: then it
	// writes nothing and returns false.
	Insert(ctx context.Context, tx *sql.Tx, n domain.Notification) (bool, error)
	// List returns up to limit of userID's notifications with ids less
	// than before (any when ""), newest first.
	List(ctx context.Context, userID, before string, limit int) ([]domain.Notification, error)
}

// Sink delivers notifications (sends the email). Implementations are safe
// for concurrent use.
//
// Send runs before the notification's transaction commits, so a crash or
// a failed commit right after a successful Send makes the event be handled
// again and Send be called again for the same EventID. A sink that must
// not deliver twice has to recognise the EventID it already delivered
// (the file sink does); one where a repeat is harmless (a log line) need
// not. An error means nothing was delivered and the event is retried.
type Sink interface {
	Send(ctx context.Context, n domain.Notification) error
}

// Notifications runs the use cases. It is safe for concurrent use.
type Notifications struct {
	repo   NotificationRepository
	sink   Sink
	tokens pagination.Tokens
	now    func() time.Time
}

// New returns the use cases over repo, delivering to sink. pageTokenKey
// signs list page tokens; it must not be empty and must be the same on
// every replica.
func New(repo NotificationRepository, sink Sink, pageTokenKey []byte) *Notifications {
	return &Notifications{
		repo:   repo,
		sink:   sink,
		tokens: pagination.NewTokens(pageTokenKey, "notifications"),
		// Microseconds are what PostgreSQL keeps.
		now: func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) },
	}
}

// Event is one event to notify about.
type Event struct {
	ID      string
	Subject string
	Payload []byte
}

// HandleEvent records the one notification ev calls for and delivers it,
// inside tx. An event whose notification exists already is a no-op and
// delivers nothing. A payload that cannot be read is
// domain.ErrMalformedEvent; a failed delivery is returned so that tx rolls
// back and the event is retried.
func (a *Notifications) HandleEvent(ctx context.Context, tx *sql.Tx, ev Event) error {
	recipient, message, err := a.compose(ctx, tx, ev)
	if err != nil {
		return err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("generate notification id: %w", err)
	}
	n := domain.NewNotification(id.String(), ev.ID, ev.Subject, recipient, message, a.now())
	inserted, err := a.repo.Insert(ctx, tx, n)
	if err != nil {
		return fmt.Errorf("store notification: %w", err)
	}
	if !inserted {
		return nil
	}
	if err := a.sink.Send(ctx, n); err != nil {
		return fmt.Errorf("deliver notification %s: %w", n.ID, err)
	}
	return nil
}

// compose works out who ev is for and what to tell them.
func (a *Notifications) compose(ctx context.Context, tx *sql.Tx, ev Event) (domain.Recipient, domain.Message, error) {
	if ev.Subject == domain.SubjectUserRegistered {
		u, err := domain.DecodeUserRegistered(ev.Payload)
		if err != nil {
			return domain.Recipient{}, domain.Message{}, err
		}
		r := domain.Recipient(u)
		// Order events carry no name and not always an email: remember
		// both for them.
		if err := a.repo.RememberRecipient(ctx, tx, r); err != nil {
			return domain.Recipient{}, domain.Message{}, fmt.Errorf("remember recipient: %w", err)
		}
		return r, domain.WelcomeMessage(r), nil
	}

	var write func(domain.Recipient, domain.OrderEvent) domain.Message
	switch ev.Subject {
	case domain.SubjectOrderConfirmed:
		write = domain.OrderConfirmedMessage
	case domain.SubjectOrderCancelled:
		write = domain.OrderCancelledMessage
	case domain.SubjectOrderRefunded:
		write = domain.OrderRefundedMessage
	case domain.SubjectOrderRejected:
		write = domain.OrderRejectedMessage
	default:
		return domain.Recipient{}, domain.Message{}, fmt.Errorf("%w: no notification for %q", domain.ErrMalformedEvent, ev.Subject)
	}
	o, err := domain.DecodeOrderEvent(ev.Subject, ev.Payload)
	if err != nil {
		return domain.Recipient{}, domain.Message{}, err
	}
	known, _, err := a.repo.Recipient(ctx, tx, o.UserID)
	if err != nil {
		return domain.Recipient{}, domain.Message{}, fmt.Errorf("look up recipient: %w", err)
	}
	r := domain.Recipient{UserID: o.UserID, Email: known.Email, Name: known.Name}
	if o.Email != "" {
		r.Email = o.Email
	}
	return r, write(r, o), nil
}

// ListNotifications asks for one page of the caller's notifications.
type ListNotifications struct {
	// PageSize is 1..MaxPageSize; 0 means DefaultPageSize.
	PageSize int
	// PageToken is "" for the first page, else a NextPageToken returned to
	// the same caller.
	PageToken string
}

// NotificationPage is one page of a listing.
type NotificationPage struct {
	Notifications []domain.Notification
	// NextPageToken continues the listing; "" on the last page.
	NextPageToken string
}

// ListNotifications returns the notifications sent to the caller, newest
// first. Everyone, admins included, sees only their own: these are the
// caller's messages, not a log of the system's.
func (a *Notifications) ListNotifications(ctx context.Context, q ListNotifications) (NotificationPage, error) {
	p, err := auth.RequireUser(ctx)
	if err != nil {
		return NotificationPage{}, err
	}
	size, err := pagination.PageSize(q.PageSize)
	if err != nil {
		return NotificationPage{}, err
	}
	before := ""
	if q.PageToken != "" {
		if before, err = a.tokens.Parse(q.PageToken, p.UserID); err != nil {
			return NotificationPage{}, err
		}
	}
	ns, err := a.repo.List(ctx, p.UserID, before, size+1)
	if err != nil {
		return NotificationPage{}, fmt.Errorf("list notifications: %w", err)
	}
	page := NotificationPage{Notifications: ns}
	if len(ns) > size {
		page.Notifications = ns[:size]
		page.NextPageToken = a.tokens.Issue(page.Notifications[size-1].ID, p.UserID)
	}
	return page, nil
}

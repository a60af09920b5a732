// Package domain holds what notifications says and to whom: the events it
// reacts to, the messages a person receives for each, and how money is
// written in them. It does no I/O.
package domain

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// The events that cause a notification; a notification's Kind is one of them.
const (
	SubjectUserRegistered = "user.registered"
	SubjectOrderConfirmed = "order.confirmed"
	SubjectOrderCancelled = "order.cancelled"
	SubjectOrderRefunded  = "order.refunded"
	SubjectOrderRejected  = "order.rejected"
)

// ChannelEmail is the channel of every notification today.
const ChannelEmail = "email"

// maxNameRunes bounds how much of a person's name goes into a greeting.
const maxNameRunes = 100

// Notification is one message sent to a user because of one event.
type Notification struct {
	ID      string
	UserID  string
	EventID string
	// Kind is the subject of the event that caused it, e.g. "order.confirmed".
	Kind      string
	Channel   string
	Recipient string
	Subject   string
	Body      string
	CreatedAt time.Time
}

// Recipient is who a notification is for, as far as it is known.
type Recipient struct {
	UserID string
	// Email is "" when no event has told it yet.
	Email string
	// Name is what the person gave at sign-up, "" when unknown.
	Name string
}

// Message is what a notification says.
type Message struct {
	Subject string
	Body    string
}

// UserRegistered is the payload of user.registered (published by identity).
type UserRegistered struct {
	UserID string `json:"user_id"`
	Email  string `json:"email"`
	Name   string `json:"name"`
}

// OrderEvent is the payload of order.confirmed, order.cancelled,
// order.refunded and order.rejected (published by orders). Fields an event
// does not carry are left zero.
type OrderEvent struct {
	OrderID    string      `json:"order_id"`
	UserID     string      `json:"user_id"`
	Email      string      `json:"email"`
	Items      []OrderItem `json:"items"`
	TotalCents int64       `json:"total_cents"`
	Currency   string      `json:"currency"`
	Reason     string      `json:"reason"`
	// Refunded is set on order.cancelled when the order had been paid.
	Refunded bool `json:"refunded"`
	// AmountCents is what order.refunded gave back, when it says;
	// TotalCents otherwise.
	AmountCents int64 `json:"amount_cents"`
}

// OrderItem is one line of an order.
type OrderItem struct {
	ProductID      string `json:"product_id"`
	SKU            string `json:"sku"`
	Name           string `json:"name"`
	Quantity       int64  `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
	LineTotalCents int64  `json:"line_total_cents"`
}

// DecodeUserRegistered reads a user.registered payload; ErrMalformedEvent
// when it is not JSON or names no user.
func DecodeUserRegistered(payload []byte) (UserRegistered, error) {
	var u UserRegistered
	if err := json.Unmarshal(payload, &u); err != nil {
		return UserRegistered{}, fmt.Errorf("%w: %s: %w", ErrMalformedEvent, SubjectUserRegistered, err)
	}
	if strings.TrimSpace(u.UserID) == "" {
		return UserRegistered{}, fmt.Errorf("%w: %s without user_id", ErrMalformedEvent, SubjectUserRegistered)
	}
	return u, nil
}

// DecodeOrderEvent reads an order event's payload; ErrMalformedEvent when
// it is not JSON or names no user or order.
func DecodeOrderEvent(subject string, payload []byte) (OrderEvent, error) {
	var o OrderEvent
	if err := json.Unmarshal(payload, &o); err != nil {
		return OrderEvent{}, fmt.Errorf("%w: %s: %w", ErrMalformedEvent, subject, err)
	}
	if strings.TrimSpace(o.UserID) == "" || strings.TrimSpace(o.OrderID) == "" {
		return OrderEvent{}, fmt.Errorf("%w: %s without user_id or order_id", ErrMalformedEvent, subject)
	}
	return o, nil
}

// NewNotification is the notification of message m for r, caused by the
// event eventID of kind kind.
func NewNotification(id, eventID, kind string, r Recipient, m Message, now time.Time) Notification {
	return Notification{
		ID: id, UserID: r.UserID, EventID: eventID, Kind: kind, Channel: ChannelEmail,
		Recipient: r.Email, Subject: m.Subject, Body: m.Body, CreatedAt: now,
	}
}

const signature = "— mercato\n"

// WelcomeMessage greets a new user.
func WelcomeMessage(r Recipient) Message {
	name := cleanName(r.Name)
	subject := "Welcome to mercato"
	if name != "" {
		subject += ", " + name
	}
	var b strings.Builder
	b.WriteString(greeting(name))
	b.WriteString("Thanks for signing up. Your account")
	if r.Email != "" {
		b.WriteString(" " + r.Email)
	}
	b.WriteString(" is ready: browse the catalog, fill your cart and check out whenever you like.\n\n")
	b.WriteString(signature)
	return Message{Subject: subject, Body: b.String()}
}

// OrderConfirmedMessage confirms a paid order, listing what was bought and
// the total.
func OrderConfirmedMessage(r Recipient, o OrderEvent) Message {
	var b strings.Builder
	b.WriteString(greeting(cleanName(r.Name)))
	fmt.Fprintf(&b, "Thank you for your order. Order %s is confirmed and your payment has been taken.\n\n", o.OrderID)
	writeItems(&b, o)
	b.WriteString(signature)
	return Message{Subject: fmt.Sprintf("Your order %s is confirmed", o.OrderID), Body: b.String()}
}

// OrderCancelledMessage tells why an order was cancelled and, when it had
// been paid, that the money comes back.
func OrderCancelledMessage(r Recipient, o OrderEvent) Message {
	var b strings.Builder
	b.WriteString(greeting(cleanName(r.Name)))
	fmt.Fprintf(&b, "Your order %s was cancelled.\n", o.OrderID)
	if reason := cleanText(o.Reason); reason != "" {
		fmt.Fprintf(&b, "Reason: %s\n", reason)
	}
	b.WriteString("\n")
	if o.Refunded {
		if o.TotalCents > 0 {
			fmt.Fprintf(&b, "The %s you paid will be refunded to your original payment method.\n\n", FormatMoney(o.TotalCents, o.Currency))
		} else {
			b.WriteString("What you paid will be refunded to your original payment method.\n\n")
		}
	}
	writeItems(&b, o)
	b.WriteString(signature)
	return Message{Subject: fmt.Sprintf("Your order %s was cancelled", o.OrderID), Body: b.String()}
}

// OrderRefundedMessage tells that a refund was issued.
func OrderRefundedMessage(r Recipient, o OrderEvent) Message {
	var b strings.Builder
	b.WriteString(greeting(cleanName(r.Name)))
	amount := o.AmountCents
	if amount <= 0 {
		amount = o.TotalCents
	}
	if amount > 0 {
		fmt.Fprintf(&b, "We have refunded %s for order %s to your original payment method.", FormatMoney(amount, o.Currency), o.OrderID)
	} else {
		fmt.Fprintf(&b, "We have refunded order %s to your original payment method.", o.OrderID)
	}
	b.WriteString(" Depending on your bank, it can take a few business days to show on your statement.\n\n")
	b.WriteString(signature)
	return Message{Subject: fmt.Sprintf("Your refund for order %s is on its way", o.OrderID), Body: b.String()}
}

// OrderRejectedMessage tells that an order could not be placed. The saga
// rejects an order before it touches the payment, so nothing was charged.
func OrderRejectedMessage(r Recipient, o OrderEvent) Message {
	var b strings.Builder
	b.WriteString(greeting(cleanName(r.Name)))
	fmt.Fprintf(&b, "Sorry, we could not place your order %s.\n", o.OrderID)
	if reason := cleanText(o.Reason); reason != "" {
		fmt.Fprintf(&b, "Reason: %s\n", reason)
	}
	b.WriteString("You have not been charged.\n\n")
	b.WriteString(signature)
	return Message{Subject: fmt.Sprintf("Your order %s could not be placed", o.OrderID), Body: b.String()}
}

func greeting(name string) string {
	if name == "" {
		return "Hello,\n\n"
	}
	return "Hi " + name + ",\n\n"
}

// writeItems lists the order's lines with their amounts, then the total.
func writeItems(b *strings.Builder, o OrderEvent) {
	for _, it := range o.Items {
		label := cleanText(it.Name)
		if label == "" {
			label = cleanText(it.SKU)
		}
		if label == "" {
			label = "product " + cleanText(it.ProductID)
		}
		fmt.Fprintf(b, "  %d × %s", it.Quantity, label)
		line := it.LineTotalCents
		if line <= 0 && it.UnitPriceCents > 0 {
			line = it.UnitPriceCents * it.Quantity
		}
		if line > 0 {
			fmt.Fprintf(b, "  %s", FormatMoney(line, o.Currency))
		}
		b.WriteString("\n")
	}
	if len(o.Items) > 0 {
		b.WriteString("\n")
	}
	if o.TotalCents > 0 {
		fmt.Fprintf(b, "Total: %s\n\n", FormatMoney(o.TotalCents, o.Currency))
	}
}

// cleanName makes a user-given name safe for a subject line: no control
// characters (a newline would forge mail headers), no runs of spaces, and
// at most maxNameRunes runes.
func cleanName(name string) string {
	name = cleanText(name)
	if utf8.RuneCountInString(name) > maxNameRunes {
		name = strings.TrimSpace(string([]rune(name)[:maxNameRunes])) + "…"
	}
	return name
}

// cleanText drops control characters and invalid UTF-8, and collapses
// white space, so text from an event stays on one line.
func cleanText(s string) string {
	s = strings.ToValidUTF8(s, "")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

package ports

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/mercato-dev/mercato/internal/cart/app"
	"github.com/mercato-dev/mercato/internal/cart/domain"
	"github.com/mercato-dev/mercato/internal/platform/events"
)

// OrderConfirmedConsumer is the durable consumer through which the cart
// learns of confirmed orders.
const OrderConfirmedConsumer = "cart-order-confirmed"

// SubjectOrderConfirmed is the event the cart consumes.
const SubjectOrderConfirmed = "order.confirmed"

// OrderConfirmedConsumerConfig is the consumer's configuration; maxDeliver
// 0 means the events package's default.
func OrderConfirmedConsumerConfig(maxDeliver int) events.ConsumerConfig {
	return events.ConsumerConfig{
		Name:       OrderConfirmedConsumer,
		Subjects:   []string{SubjectOrderConfirmed},
		MaxDeliver: maxDeliver,
	}
}

// orderConfirmedPayload is the part of order.confirmed the cart reads;
// other fields are ignored. from_cart is true when the order checked out
// the buyer's cart; an order that listed its items itself ("buy now"), or
// a payload without the field, leaves the cart as it is.
type orderConfirmedPayload struct {
	OrderID  string `json:"order_id"`
	UserID   string `json:"user_id"`
	FromCart bool   `json:"from_cart"`
	Items    []struct {
		ProductID string `json:"product_id"`
		Quantity  int    `json:"quantity"`
	} `json:"items"`
}

// OrderConfirmedHandler takes the ordered items out of the buyer's cart
// when the order checked out that cart (from_cart); any other order is
// acknowledged without a change. A payload that cannot be read, or names
// no user, is permanent: it goes to the dead-letter stream at once.
func OrderConfirmedHandler(c *app.Cart) events.Handler {
	return func(ctx context.Context, tx *sql.Tx, msg events.Message) error {
		var p orderConfirmedPayload
		if err := json.Unmarshal(msg.Payload, &p); err != nil {
			return events.Permanent(fmt.Errorf("decode %s: %w", msg.Subject, err))
		}
		if p.UserID == "" {
			return events.Permanent(errors.New("decode order.confirmed: no user_id"))
		}
		if !p.FromCart {
			return nil
		}
		ordered := make([]domain.Item, len(p.Items))
		for i, it := range p.Items {
			ordered[i] = domain.Item{ProductID: it.ProductID, Quantity: it.Quantity}
		}
		return c.RemoveOrdered(ctx, tx, app.OrderConfirmed{EventID: msg.ID, UserID: p.UserID, Items: ordered})
	}
}

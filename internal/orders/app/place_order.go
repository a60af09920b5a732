package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/mercato-dev/mercato/internal/orders/domain"
	"github.com/mercato-dev/mercato/internal/platform/auth"
)

// PlaceOrder is a request to buy.
type PlaceOrder struct {
	// IdempotencyKey is the client's Idempotency-Key header.
	IdempotencyKey string
	// Items empty means: check out the caller's cart.
	Items           []domain.ItemInput
	ShippingAddress *domain.Address
	PaymentToken    string
}

// PlaceOrder records a pending order and starts its checkout. Prices come
// from the catalog. Payments is asked whether it knows the card token
// before anything is written: an unknown token is Invalid, and payments
// unreachable is Unavailable, with no order created either way. The same
// idempotency key with the same request returns the order the first call
// created (in its current state), even when both calls race; with another
// request it is Unprocessable.
func (a *Orders) PlaceOrder(ctx context.Context, cmd PlaceOrder) (domain.View, error) {
	p, err := auth.RequireUser(ctx)
	if err != nil {
		return domain.View{}, err
	}
	key, err := domain.NormalizeIdempotencyKey(cmd.IdempotencyKey)
	if err != nil {
		return domain.View{}, err
	}
	addr, err := domain.NormalizeAddress(cmd.ShippingAddress)
	if err != nil {
		return domain.View{}, err
	}
	if err := domain.ValidatePaymentToken(cmd.PaymentToken); err != nil {
		return domain.View{}, err
	}
	var lines []domain.ItemInput
	if len(cmd.Items) > 0 {
		if lines, err = domain.NormalizeItems("items", cmd.Items); err != nil {
			return domain.View{}, err
		}
	}
	hash := requestHash(lines, addr, cmd.PaymentToken)

	// A retry is answered without calling the cart or the catalog again.
	if rec, found, err := a.keys.FindIdempotencyKey(ctx, p.UserID, key); err != nil {
		return domain.View{}, fmt.Errorf("find idempotency key: %w", err)
	} else if found {
		return a.replay(ctx, rec, hash)
	}

	fromCart := len(lines) == 0
	if fromCart {
		inCart, err := a.cart.Items(ctx, p)
		if err != nil {
			a.log.WarnContext(ctx, "reading the cart failed", "error", err.Error())
			return domain.View{}, ErrCartDown
		}
		if len(inCart) == 0 {
			return domain.View{}, domain.ErrCartEmpty
		}
		if lines, err = domain.NormalizeItems("cart", inCart); err != nil {
			return domain.View{}, err
		}
	}
	items, total, currency, err := a.price(ctx, lines)
	if err != nil {
		return domain.View{}, err
	}
	if err := a.checkPaymentToken(ctx, cmd.PaymentToken); err != nil {
		return domain.View{}, err
	}

	id, err := uuid.NewV7()
	if err != nil {
		return domain.View{}, fmt.Errorf("generate order id: %w", err)
	}
	now := storedTime(a.cfg.Now())
	placed := domain.PlaceOrder{
		OrderID: id.String(), UserID: p.UserID, Email: p.Email, Items: items, TotalCents: total,
		Currency: currency, ShippingAddress: addr, PaymentToken: cmd.PaymentToken,
		FromCart: fromCart, PlacedAt: now, Deadline: a.cfg.SagaDeadline,
	}.Placed()
	var o domain.Order
	if err := o.Apply(placed); err != nil {
		return domain.View{}, err
	}
	out, err := integrationEvents(o, placed)
	if err != nil {
		return domain.View{}, err
	}
	if err := a.fire("before:" + string(domain.OrderPlaced)); err != nil {
		return domain.View{}, err
	}
	rec := IdempotencyRecord{UserID: p.UserID, Key: key, RequestHash: hash, OrderID: o.ID}
	err = a.orders.Create(ctx, rec, o, []domain.Event{placed}, out, SagaWrite{Now: now, Step: o.NextStep(now, false)})
	if errors.Is(err, ErrIdempotencyKeyTaken) {
		// A concurrent request with the same key won the race.
		rec, found, err := a.keys.FindIdempotencyKey(ctx, p.UserID, key)
		if err != nil || !found {
			return domain.View{}, fmt.Errorf("find idempotency key after a race: %w", errors.Join(err, ErrIdempotencyKeyTaken))
		}
		return a.replay(ctx, rec, hash)
	}
	if err != nil {
		return domain.View{}, fmt.Errorf("create order: %w", err)
	}
	if err := a.fire(string(domain.OrderPlaced)); err != nil {
		return domain.View{}, err
	}
	a.saga.Wake(o.ID)
	return o.View(), nil
}

// checkPaymentToken asks payments whether it knows the card, as a card
// provider validates a payment method when it is attached rather than at
// the first charge. The saga still handles a token refused at
// authorization (it may be revoked in between).
func (a *Orders) checkPaymentToken(ctx context.Context, token string) error {
	err := a.payments.CheckPaymentToken(ctx, token)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrPaymentTokenRejected):
		return domain.ErrPaymentTokenUnknown
	}
	a.log.WarnContext(ctx, "checking the payment token failed", "error", err.Error())
	return ErrPaymentsDown
}

func (a *Orders) price(ctx context.Context, lines []domain.ItemInput) ([]domain.Item, int64, string, error) {
	ids := make([]string, len(lines))
	for i, l := range lines {
		ids[i] = l.ProductID
	}
	products, err := a.catalog.Products(ctx, ids)
	if err != nil {
		a.log.WarnContext(ctx, "reading prices from the catalog failed", "error", err.Error())
		return nil, 0, "", ErrCatalogDown
	}
	byID := make(map[string]domain.Product, len(products))
	for _, p := range products {
		byID[p.ID] = p
	}
	return domain.PriceItems(lines, byID)
}

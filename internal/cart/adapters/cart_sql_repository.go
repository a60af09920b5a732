// Package adapters implements the cart's repositories (one SQL repository
// for SQLite and PostgreSQL, and one on Redis) and its catalog client.
package adapters

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/mercato-dev/mercato/internal/cart/app"
	"github.com/mercato-dev/mercato/internal/cart/domain"
	"github.com/mercato-dev/mercato/internal/platform/db"
)

// CartSQLRepository is the app.CartRepository on SQLite or PostgreSQL.
//
// Every write to a cart first bumps its row in carts (an upsert), which
// takes that row's lock on PostgreSQL and the database's write lock on
// SQLite: writers of one cart take turns, so counting the lines and
// inserting one is a single atomic step and the line limit holds under
// concurrent adds, while different carts never wait for each other on
// PostgreSQL. The bumped counter is also the new line's position.
type CartSQLRepository struct {
	db *db.DB
}

var _ app.CartRepository = (*CartSQLRepository)(nil)

// NewCartSQLRepository returns the repository over d, whose schema the
// cart's migrations created.
func NewCartSQLRepository(d *db.DB) *CartSQLRepository {
	return &CartSQLRepository{db: d}
}

// Items implements app.CartRepository.
func (r *CartSQLRepository) Items(ctx context.Context, userID string) ([]domain.Item, error) {
	rows, err := r.db.QueryContext(ctx,
		`SELECT product_id, quantity FROM cart_items WHERE user_id = $1 ORDER BY position`, userID)
	if err != nil {
		return nil, fmt.Errorf("select cart items: %w", err)
	}
	defer rows.Close()
	items := []domain.Item{}
	for rows.Next() {
		var it domain.Item
		if err := rows.Scan(&it.ProductID, &it.Quantity); err != nil {
			return nil, fmt.Errorf("scan cart item: %w", err)
		}
		items = append(items, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("select cart items: %w", err)
	}
	return items, nil
}

// SetQuantity implements app.CartRepository.
func (r *CartSQLRepository) SetQuantity(ctx context.Context, userID, productID string, quantity int) error {
	return r.db.InTx(ctx, func(tx *sql.Tx) error {
		var position int64
		err := tx.QueryRowContext(ctx, `INSERT INTO carts (user_id, last_position) VALUES ($1, 1)
			ON CONFLICT (user_id) DO UPDATE SET last_position = carts.last_position + 1
			RETURNING last_position`, userID).Scan(&position)
		if err != nil {
			return fmt.Errorf("lock cart: %w", err)
		}
		res, err := tx.ExecContext(ctx,
			`UPDATE cart_items SET quantity = $3 WHERE user_id = $1 AND product_id = $2`, userID, productID, quantity)
		if err != nil {
			return fmt.Errorf("update cart item: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("update cart item: %w", err)
		} else if n == 1 {
			return nil
		}
		var lines int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM cart_items WHERE user_id = $1`, userID).Scan(&lines); err != nil {
			return fmt.Errorf("count cart items: %w", err)
		}
		if lines >= domain.MaxDistinctItems {
			return domain.ErrCartFull
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO cart_items (user_id, product_id, quantity, position) VALUES ($1, $2, $3, $4)`,
			userID, productID, quantity, position); err != nil {
			return fmt.Errorf("insert cart item: %w", err)
		}
		return nil
	})
}

// Remove implements app.CartRepository.
func (r *CartSQLRepository) Remove(ctx context.Context, userID, productID string) error {
	if _, err := r.db.ExecContext(ctx,
		`DELETE FROM cart_items WHERE user_id = $1 AND product_id = $2`, userID, productID); err != nil {
		return fmt.Errorf("delete cart item: %w", err)
	}
	return nil
}

// Clear implements app.CartRepository.
func (r *CartSQLRepository) Clear(ctx context.Context, userID string) error {
	return r.db.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM cart_items WHERE user_id = $1`, userID); err != nil {
			return fmt.Errorf("delete cart items: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM carts WHERE user_id = $1`, userID); err != nil {
			return fmt.Errorf("delete cart: %w", err)
		}
		return nil
	})
}

// RemoveOrdered implements app.CartRepository. The change is made in tx, the
// consumer's transaction that also records eventID as processed, so it
// commits exactly once per event; eventID itself is not needed here.
func (r *CartSQLRepository) RemoveOrdered(ctx context.Context, tx *sql.Tx, _, userID string, ordered []domain.Item) error {
	for _, it := range ordered {
		// Delete first: the quantity CHECK forbids a line at 0 even briefly.
		if _, err := tx.ExecContext(ctx,
			`DELETE FROM cart_items WHERE user_id = $1 AND product_id = $2 AND ($3 <= 0 OR quantity <= $3)`,
			userID, it.ProductID, it.Quantity); err != nil {
			return fmt.Errorf("delete ordered cart item: %w", err)
		}
		if _, err := tx.ExecContext(ctx,
			`UPDATE cart_items SET quantity = quantity - $3 WHERE user_id = $1 AND product_id = $2`,
			userID, it.ProductID, it.Quantity); err != nil {
			return fmt.Errorf("reduce ordered cart item: %w", err)
		}
	}
	return nil
}

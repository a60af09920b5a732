// Package adapters implements the payments service's repository with SQL
// that runs unchanged on SQLite and PostgreSQL, the fake card provider,
// and the service's metrics.
package adapters

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/mercato-dev/mercato/internal/payments/app"
	"github.com/mercato-dev/mercato/internal/payments/domain"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/events"
)

// Outbox records events inside a transaction and is told when some committed.
type Outbox interface {
	Add(ctx context.Context, tx *sql.Tx, ev events.Event) error
	Wake()
}

// PaymentSQLRepository is the app.PaymentRepository on SQLite or PostgreSQL.
//
// The guarantees rest on the schema, not on locks held across calls: the
// unique idempotency_key makes one Authorize key one payment; every status
// change is an UPDATE conditional on the status (and operation in progress)
// it starts from, so of two racing writers exactly one changes the row; and
// the partial unique index payments_one_capture_per_order lets at most one
// payment per order be captured or being captured.
type PaymentSQLRepository struct {
	db     *db.DB
	outbox Outbox
}

var _ app.PaymentRepository = (*PaymentSQLRepository)(nil)

const paymentColumns = `id, order_id, user_id, amount_cents, currency, status, decline_code, card_brand,
	provider_ref, idempotency_key, request_hash, pending_op, created_at, updated_at`

// beginAttempts bounds BeginAuthorization's retries when the payment whose
// key it collided with is deleted before it could be read.
const beginAttempts = 3

// NewPaymentSQLRepository returns the repository on d, whose schema the
// payments migrations and events.EnsureSchema created.
func NewPaymentSQLRepository(d *db.DB, outbox Outbox) *PaymentSQLRepository {
	return &PaymentSQLRepository{db: d, outbox: outbox}
}

// BeginAuthorization implements app.PaymentRepository.
func (r *PaymentSQLRepository) BeginAuthorization(ctx context.Context, p domain.Payment) (domain.Payment, bool, error) {
	for range beginAttempts {
		res, err := r.db.ExecContext(ctx, `INSERT INTO payments
			(id, order_id, user_id, amount_cents, currency, status, decline_code, card_brand,
			 provider_ref, idempotency_key, request_hash, pending_op, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
			ON CONFLICT (idempotency_key) DO NOTHING`,
			p.ID, p.OrderID, p.UserID, p.AmountCents, p.Currency, string(p.Status), p.DeclineCode, p.CardBrand,
			p.ProviderRef, p.IdempotencyKey, p.RequestHash, string(p.PendingOp),
			db.FormatTime(p.CreatedAt), db.FormatTime(p.UpdatedAt))
		if err != nil {
			return domain.Payment{}, false, fmt.Errorf("insert payment: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return domain.Payment{}, false, fmt.Errorf("rows affected: %w", err)
		} else if n == 1 {
			return p, true, nil
		}
		stored, err := scanPayment(r.db.QueryRowContext(ctx,
			`SELECT `+paymentColumns+` FROM payments WHERE idempotency_key = $1`, p.IdempotencyKey))
		if errors.Is(err, sql.ErrNoRows) {
			continue // abandoned in between: the key is free again
		}
		if err != nil {
			return domain.Payment{}, false, fmt.Errorf("select payment by idempotency key: %w", err)
		}
		return stored, false, nil
	}
	return domain.Payment{}, false, domain.ErrConcurrentChange
}

// CompleteAuthorization implements app.PaymentRepository.
func (r *PaymentSQLRepository) CompleteAuthorization(ctx context.Context, p domain.Payment, ev events.Event) (domain.Payment, bool, error) {
	recorded := false
	err := r.db.InTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE payments SET
			status = $1, decline_code = $2, card_brand = $3, provider_ref = $4, updated_at = $5
			WHERE id = $6 AND status = 'pending'`,
			string(p.Status), p.DeclineCode, p.CardBrand, p.ProviderRef, db.FormatTime(p.UpdatedAt), p.ID)
		if err != nil {
			return fmt.Errorf("update payment: %w", err)
		}
		if recorded, err = oneRow(res); err != nil || !recorded {
			return err
		}
		return r.outbox.Add(ctx, tx, ev)
	})
	if err != nil {
		return domain.Payment{}, false, err
	}
	if !recorded {
		stored, err := r.Get(ctx, p.ID)
		return stored, false, err
	}
	r.outbox.Wake()
	return p, true, nil
}

// AbandonAuthorization implements app.PaymentRepository.
func (r *PaymentSQLRepository) AbandonAuthorization(ctx context.Context, id string) error {
	if _, err := r.db.ExecContext(ctx, `DELETE FROM payments WHERE id = $1 AND status = 'pending'`, id); err != nil {
		return fmt.Errorf("delete pending payment: %w", err)
	}
	return nil
}

// Get implements app.PaymentRepository.
func (r *PaymentSQLRepository) Get(ctx context.Context, id string) (domain.Payment, error) {
	p, err := scanPayment(r.db.QueryRowContext(ctx, `SELECT `+paymentColumns+` FROM payments WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return domain.Payment{}, domain.ErrNotFound
	}
	if err != nil {
		return domain.Payment{}, fmt.Errorf("select payment: %w", err)
	}
	return p, nil
}

// BeginOperation implements app.PaymentRepository.
func (r *PaymentSQLRepository) BeginOperation(ctx context.Context, id string, op domain.Operation) (bool, error) {
	res, err := r.db.ExecContext(ctx,
		`UPDATE payments SET pending_op = $1 WHERE id = $2 AND status = $3 AND pending_op = ''`,
		string(op), id, string(op.Source()))
	if op == domain.OpCapture && db.IsUniqueViolation(err) {
		return false, domain.ErrOrderCaptured
	}
	if err != nil {
		return false, fmt.Errorf("mark %s in progress: %w", op, err)
	}
	return oneRow(res)
}

// CompleteOperation implements app.PaymentRepository.
func (r *PaymentSQLRepository) CompleteOperation(ctx context.Context, p domain.Payment, op domain.Operation, ev events.Event) (bool, error) {
	recorded := false
	err := r.db.InTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE payments SET status = $1, pending_op = '', updated_at = $2
			WHERE id = $3 AND status = $4 AND pending_op = $5`,
			string(p.Status), db.FormatTime(p.UpdatedAt), p.ID, string(op.Source()), string(op))
		if err != nil {
			return fmt.Errorf("update payment: %w", err)
		}
		if recorded, err = oneRow(res); err != nil || !recorded {
			return err
		}
		return r.outbox.Add(ctx, tx, ev)
	})
	if err != nil {
		return false, err
	}
	if recorded {
		r.outbox.Wake()
	}
	return recorded, nil
}

// ListByOrder implements app.PaymentRepository.
func (r *PaymentSQLRepository) ListByOrder(ctx context.Context, orderID, userID string) ([]domain.Payment, error) {
	query := `SELECT ` + paymentColumns + ` FROM payments WHERE order_id = $1 AND status <> 'pending'`
	args := []any{orderID}
	if userID != "" {
		query += ` AND user_id = $2`
		args = append(args, userID)
	}
	rows, err := r.db.QueryContext(ctx, query+` ORDER BY id`, args...)
	if err != nil {
		return nil, fmt.Errorf("select payments of order: %w", err)
	}
	defer rows.Close()
	var out []domain.Payment
	for rows.Next() {
		p, err := scanPayment(rows)
		if err != nil {
			return nil, fmt.Errorf("scan payment: %w", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read payments: %w", err)
	}
	return out, nil
}

func oneRow(res sql.Result) (bool, error) {
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("rows affected: %w", err)
	}
	return n == 1, nil
}

type rowScanner interface{ Scan(dest ...any) error }

func scanPayment(row rowScanner) (domain.Payment, error) {
	var (
		p               domain.Payment
		status, pending string
	)
	err := row.Scan(&p.ID, &p.OrderID, &p.UserID, &p.AmountCents, &p.Currency, &status, &p.DeclineCode,
		&p.CardBrand, &p.ProviderRef, &p.IdempotencyKey, &p.RequestHash, &pending,
		db.Time(&p.CreatedAt), db.Time(&p.UpdatedAt))
	if err != nil {
		return domain.Payment{}, err
	}
	p.Status, p.PendingOp = domain.Status(status), domain.Operation(pending)
	return p, nil
}

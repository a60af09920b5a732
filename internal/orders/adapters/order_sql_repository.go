// Package adapters implements the orders service's store (one SQL
// repository for SQLite and PostgreSQL) and its clients of the catalog,
// cart, inventory and payments services.
package adapters

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mercato-dev/mercato/internal/orders/app"
	"github.com/mercato-dev/mercato/internal/orders/domain"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/events"
)

// Outbox records events inside a transaction and is told when some committed.
type Outbox interface {
	Add(ctx context.Context, tx *sql.Tx, ev events.Event) error
	Wake()
}

// OrderSQLRepository is the orders service's store on SQLite or
// PostgreSQL: it implements app.OrderRepository, app.SagaRepository and
// app.IdempotencyKeyRepository over the same tables.
//
// order_events is the source of truth; its primary key (order_id,
// version) is the optimistic concurrency check. The orders row is the read
// model plus the saga's bookkeeping, written in the same transaction as
// every append, so the two never disagree.
type OrderSQLRepository struct {
	db     *db.DB
	outbox Outbox
}

var (
	_ app.OrderRepository          = (*OrderSQLRepository)(nil)
	_ app.SagaRepository           = (*OrderSQLRepository)(nil)
	_ app.IdempotencyKeyRepository = (*OrderSQLRepository)(nil)
)

// NewOrderSQLRepository returns the repository over d, whose schema the
// orders migrations and events.EnsureSchema created.
func NewOrderSQLRepository(d *db.DB, outbox Outbox) *OrderSQLRepository {
	return &OrderSQLRepository{db: d, outbox: outbox}
}

const viewColumns = `id, user_id, email, status, items, total_cents, currency, shipping_address,
	reason, refunded, payment_id, version, created_at, updated_at`

// Create implements app.OrderRepository.
func (r *OrderSQLRepository) Create(ctx context.Context, key app.IdempotencyRecord, o domain.Order, evs []domain.Event, out []events.Event, saga app.SagaWrite) error {
	items, addr, err := encodeView(o)
	if err != nil {
		return err
	}
	err = r.db.InTx(ctx, func(tx *sql.Tx) error {
		// The key goes first: a concurrent request with the same key waits
		// here for the first to commit, then fails instead of creating a
		// second order.
		_, err := tx.ExecContext(ctx, `INSERT INTO idempotency_keys
			(user_id, idempotency_key, request_hash, order_id, created_at) VALUES ($1, $2, $3, $4, $5)`,
			key.UserID, key.Key, key.RequestHash, key.OrderID, db.FormatTime(saga.Now))
		if db.IsUniqueViolation(err) {
			return app.ErrIdempotencyKeyTaken
		}
		if err != nil {
			return fmt.Errorf("insert idempotency key: %w", err)
		}
		if err := insertEvents(ctx, tx, o.ID, 0, evs); err != nil {
			return err
		}
		attempt := app.PaymentAttemptNone
		if saga.PaymentAttempt != nil {
			attempt = *saga.PaymentAttempt
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO orders
			(id, user_id, email, status, items, total_cents, currency, shipping_address, reason, refunded,
			 payment_id, version, saga_step, attempts, next_attempt_at, deadline_at, payment_attempt, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 0, $14, $15, $16, $17, $18)`,
			o.ID, o.UserID, o.Email, string(o.Status), items, o.TotalCents, o.Currency, addr, o.Reason, o.Refunded,
			o.PaymentID, o.Version, string(saga.Step), db.FormatTime(saga.Now), db.FormatTime(o.DeadlineAt), int(attempt),
			db.FormatTime(o.PlacedAt), db.FormatTime(o.UpdatedAt))
		if err != nil {
			return fmt.Errorf("insert order: %w", err)
		}
		return r.addOutbox(ctx, tx, out)
	})
	if err != nil {
		return err
	}
	if len(out) > 0 {
		r.outbox.Wake()
	}
	return nil
}

// FindIdempotencyKey implements app.IdempotencyKeyRepository.
func (r *OrderSQLRepository) FindIdempotencyKey(ctx context.Context, userID, key string) (app.IdempotencyRecord, bool, error) {
	rec := app.IdempotencyRecord{UserID: userID, Key: key}
	err := r.db.QueryRowContext(ctx,
		`SELECT request_hash, order_id FROM idempotency_keys WHERE user_id = $1 AND idempotency_key = $2`,
		userID, key).Scan(&rec.RequestHash, &rec.OrderID)
	if errors.Is(err, sql.ErrNoRows) {
		return app.IdempotencyRecord{}, false, nil
	}
	if err != nil {
		return app.IdempotencyRecord{}, false, fmt.Errorf("select idempotency key: %w", err)
	}
	return rec, true, nil
}

// forgetBatch bounds one delete of expired idempotency keys, so that a
// large backlog does not hold the write lock (SQLite) or one transaction
// (PostgreSQL) for long.
const forgetBatch = 1000

// ForgetIdempotencyKeys implements app.IdempotencyKeyRepository.
func (r *OrderSQLRepository) ForgetIdempotencyKeys(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for {
		res, err := r.db.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE (user_id, idempotency_key) IN (
			SELECT user_id, idempotency_key FROM idempotency_keys WHERE created_at < $1 ORDER BY created_at LIMIT $2)`,
			db.FormatTime(before), forgetBatch)
		if err != nil {
			return total, fmt.Errorf("delete idempotency keys: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("delete idempotency keys: %w", err)
		}
		total += n
		if n < forgetBatch {
			return total, nil
		}
	}
}

// Append implements app.OrderRepository.
//
// Items, prices and the address are fixed at placement, so only the
// columns an event can change are written.
func (r *OrderSQLRepository) Append(ctx context.Context, o domain.Order, expected int64, evs []domain.Event, out []events.Event, saga app.SagaWrite) error {
	err := r.db.InTx(ctx, func(tx *sql.Tx) error {
		if err := insertEvents(ctx, tx, o.ID, expected, evs); err != nil {
			return err
		}
		set := []string{
			"status = $1", "reason = $2", "refunded = $3", "payment_id = $4", "version = $5", "saga_step = $6",
			"attempts = 0", "next_attempt_at = $7", "updated_at = $8", "last_error = $9",
		}
		args := []any{string(o.Status), o.Reason, o.Refunded, o.PaymentID, o.Version, string(saga.Step),
			db.FormatTime(saga.Now), db.FormatTime(o.UpdatedAt), saga.Problem}
		param := func(v any) string {
			args = append(args, v)
			return "$" + strconv.Itoa(len(args))
		}
		switch {
		case saga.Step == domain.StepDone:
			set = append(set, "lease_owner = NULL", "lease_until = NULL")
		case saga.LeaseOwner != "":
			set = append(set, "lease_owner = "+param(saga.LeaseOwner), "lease_until = "+param(db.FormatTime(saga.LeaseUntil)))
		}
		if saga.PaymentAttempt != nil {
			set = append(set, "payment_attempt = "+param(int(*saga.PaymentAttempt)))
		}
		query := `UPDATE orders SET ` + strings.Join(set, ", ") +
			` WHERE id = ` + param(o.ID) + ` AND version = ` + param(expected)
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return fmt.Errorf("update order: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("update order: %w", err)
		} else if n != 1 {
			// The events went in, so the row exists at another version: a
			// writer that bypassed the stream. Treat as a conflict.
			return domain.ErrConcurrentModification
		}
		return r.addOutbox(ctx, tx, out)
	})
	if err != nil {
		return err
	}
	if len(out) > 0 {
		r.outbox.Wake()
	}
	return nil
}

func (r *OrderSQLRepository) addOutbox(ctx context.Context, tx *sql.Tx, out []events.Event) error {
	for _, ev := range out {
		if err := r.outbox.Add(ctx, tx, ev); err != nil {
			return fmt.Errorf("add %s to outbox: %w", ev.Subject, err)
		}
	}
	return nil
}

func insertEvents(ctx context.Context, tx *sql.Tx, orderID string, expected int64, evs []domain.Event) error {
	for i, ev := range evs {
		if ev.Version != expected+int64(i)+1 {
			return fmt.Errorf("append %s: version %d does not follow %d", ev.Type(), ev.Version, expected+int64(i))
		}
		data, err := domain.EncodeEventData(ev.Data)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx,
			`INSERT INTO order_events (order_id, version, type, data, occurred_at) VALUES ($1, $2, $3, $4, $5)`,
			orderID, ev.Version, string(ev.Type()), string(data), db.FormatTime(ev.OccurredAt))
		if db.IsUniqueViolation(err) {
			return domain.ErrConcurrentModification
		}
		if err != nil {
			return fmt.Errorf("insert event %s: %w", ev.Type(), err)
		}
	}
	return nil
}

// Load implements app.OrderRepository.
func (r *OrderSQLRepository) Load(ctx context.Context, id string) (domain.Order, app.SagaState, error) {
	var (
		st      app.SagaState
		step    string
		attempt int
		owner   sql.NullString
	)
	// The bookkeeping is read before the events: an append in between
	// leaves it older, never newer, than the stream, which only makes the
	// saga more careful.
	err := r.db.QueryRowContext(ctx,
		`SELECT saga_step, attempts, next_attempt_at, payment_attempt, lease_owner FROM orders WHERE id = $1`, id).
		Scan(&step, &st.Attempts, db.Time(&st.NextAttemptAt), &attempt, &owner)
	if errors.Is(err, sql.ErrNoRows) {
		return domain.Order{}, app.SagaState{}, domain.ErrNotFound
	}
	if err != nil {
		return domain.Order{}, app.SagaState{}, fmt.Errorf("select saga state: %w", err)
	}
	st.Step, st.PaymentAttempt, st.LeaseOwner = domain.Step(step), app.PaymentAttempt(attempt), owner.String
	o, err := r.Rebuild(ctx, id)
	if err != nil {
		return domain.Order{}, app.SagaState{}, err
	}
	return o, st, nil
}

// Rebuild implements app.OrderRepository.
func (r *OrderSQLRepository) Rebuild(ctx context.Context, id string) (domain.Order, error) {
	evs, err := r.Events(ctx, id)
	if err != nil {
		return domain.Order{}, err
	}
	o, err := domain.Rebuild(evs)
	if errors.Is(err, domain.ErrNotFound) {
		return domain.Order{}, err
	}
	if err != nil {
		return domain.Order{}, fmt.Errorf("rebuild order %s: %w", id, err)
	}
	return o, nil
}

// Events implements app.OrderRepository.
func (r *OrderSQLRepository) Events(ctx context.Context, id string) ([]domain.Event, error) {
	rows, err := r.db.QueryContext(ctx,
		`SELECT version, type, data, occurred_at FROM order_events WHERE order_id = $1 ORDER BY version`, id)
	if err != nil {
		return nil, fmt.Errorf("select events: %w", err)
	}
	defer rows.Close()
	var out []domain.Event
	for rows.Next() {
		var (
			ev   domain.Event
			typ  string
			data []byte
		)
		if err := rows.Scan(&ev.Version, &typ, &data, db.Time(&ev.OccurredAt)); err != nil {
			return nil, fmt.Errorf("scan event: %w", err)
		}
		if ev.Data, err = domain.DecodeEventData(domain.EventType(typ), data); err != nil {
			return nil, fmt.Errorf("order %s version %d: %w", id, ev.Version, err)
		}
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	return out, nil
}

// Get implements app.OrderRepository.
func (r *OrderSQLRepository) Get(ctx context.Context, id string) (domain.View, error) {
	v, err := scanView(r.db.QueryRowContext(ctx, `SELECT `+viewColumns+` FROM orders WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return domain.View{}, domain.ErrNotFound
	}
	if err != nil {
		return domain.View{}, fmt.Errorf("select order: %w", err)
	}
	return v, nil
}

// List implements app.OrderRepository.
func (r *OrderSQLRepository) List(ctx context.Context, userID, after string, limit int) ([]domain.View, error) {
	var (
		where []string
		args  []any
	)
	if userID != "" {
		args = append(args, userID)
		where = append(where, "user_id = $"+strconv.Itoa(len(args)))
	}
	if after != "" {
		args = append(args, after)
		where = append(where, "id < $"+strconv.Itoa(len(args)))
	}
	query := `SELECT ` + viewColumns + ` FROM orders`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	args = append(args, limit)
	query += ` ORDER BY id DESC LIMIT $` + strconv.Itoa(len(args))
	rows, err := r.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("select orders: %w", err)
	}
	defer rows.Close()
	var out []domain.View
	for rows.Next() {
		v, err := scanView(rows)
		if err != nil {
			return nil, fmt.Errorf("scan order: %w", err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read orders: %w", err)
	}
	return out, nil
}

// Claim implements app.SagaRepository.
func (r *OrderSQLRepository) Claim(ctx context.Context, id, owner string, now, until time.Time) (app.SagaState, bool, error) {
	var (
		st      app.SagaState
		step    string
		attempt int
		leaseBy sql.NullString
	)
	err := r.db.QueryRowContext(ctx, `UPDATE orders SET lease_owner = $1, lease_until = $2
		WHERE id = $3 AND saga_step <> 'done' AND next_attempt_at <= $4
		  AND (lease_until IS NULL OR lease_until < $4 OR lease_owner = $1)
		RETURNING saga_step, attempts, next_attempt_at, payment_attempt, lease_owner`,
		owner, db.FormatTime(until), id, db.FormatTime(now)).
		Scan(&step, &st.Attempts, db.Time(&st.NextAttemptAt), &attempt, &leaseBy)
	if errors.Is(err, sql.ErrNoRows) {
		return app.SagaState{}, false, nil
	}
	if err != nil {
		return app.SagaState{}, false, fmt.Errorf("claim order: %w", err)
	}
	st.Step, st.PaymentAttempt, st.LeaseOwner = domain.Step(step), app.PaymentAttempt(attempt), leaseBy.String
	return st, true, nil
}

// Due implements app.SagaRepository.
func (r *OrderSQLRepository) Due(ctx context.Context, now time.Time, limit int) ([]string, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT id FROM orders
		WHERE saga_step <> 'done' AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until < $1)
		ORDER BY next_attempt_at LIMIT $2`, db.FormatTime(now), limit)
	if err != nil {
		return nil, fmt.Errorf("select due orders: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("scan due order: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read due orders: %w", err)
	}
	return ids, nil
}

// ScheduleRetry implements app.SagaRepository.
func (r *OrderSQLRepository) ScheduleRetry(ctx context.Context, id, owner string, version int64, retry app.Retry) error {
	return r.db.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE orders SET attempts = $1, next_attempt_at = $2, last_error = $3
			WHERE id = $4 AND version = $5 AND (lease_owner IS NULL OR lease_owner = $6)`,
			retry.Attempts, db.FormatTime(retry.NextAttemptAt), retry.LastError, id, version, owner); err != nil {
			return fmt.Errorf("schedule retry: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE orders SET payment_attempt = $1,
			lease_owner = NULL, lease_until = NULL
			WHERE id = $2 AND (lease_owner IS NULL OR lease_owner = $3)`,
			int(retry.PaymentAttempt), id, owner); err != nil {
			return fmt.Errorf("schedule retry: %w", err)
		}
		return nil
	})
}

// SetPaymentAttempt implements app.SagaRepository.
func (r *OrderSQLRepository) SetPaymentAttempt(ctx context.Context, id string, p app.PaymentAttempt) error {
	if _, err := r.db.ExecContext(ctx, `UPDATE orders SET payment_attempt = $1 WHERE id = $2`, int(p), id); err != nil {
		return fmt.Errorf("set payment attempt: %w", err)
	}
	return nil
}

// ReleaseLease implements app.SagaRepository.
func (r *OrderSQLRepository) ReleaseLease(ctx context.Context, id, owner string) error {
	if _, err := r.db.ExecContext(ctx,
		`UPDATE orders SET lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2`, id, owner); err != nil {
		return fmt.Errorf("release lease: %w", err)
	}
	return nil
}

// ReleaseLeases implements app.SagaRepository.
func (r *OrderSQLRepository) ReleaseLeases(ctx context.Context, owner string) (int64, error) {
	res, err := r.db.ExecContext(ctx,
		`UPDATE orders SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1`, owner)
	if err != nil {
		return 0, fmt.Errorf("release leases: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("release leases: %w", err)
	}
	return n, nil
}

// CountInFlight implements app.SagaRepository.
func (r *OrderSQLRepository) CountInFlight(ctx context.Context) (int64, error) {
	var n int64
	if err := r.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM orders WHERE saga_step <> 'done'`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count orders in flight: %w", err)
	}
	return n, nil
}

// stuckColumns are what an operator is shown of an order that should be
// looked at: the read model and the saga's bookkeeping.
const stuckColumns = viewColumns + `, saga_step, attempts, next_attempt_at, last_error`

// stuckWhere selects the orders whose saga still has work to do and that
// recorded no event since $1.
const stuckWhere = `saga_step <> 'done' AND updated_at < $1`

// NoticeStuck implements app.SagaRepository. The mark is the version the
// order was stuck at: a new event makes a later crossing noticeable
// again, while retries (which append nothing) do not.
func (r *OrderSQLRepository) NoticeStuck(ctx context.Context, before time.Time, limit int) ([]app.StuckOrder, error) {
	// Read first and mark one by one: most checks find nothing, and a read
	// takes no write lock.
	candidates, err := r.queryStuck(ctx, `SELECT `+stuckColumns+` FROM orders
		WHERE `+stuckWhere+` AND stuck_version <> version ORDER BY updated_at LIMIT $2`,
		db.FormatTime(before), limit)
	if err != nil {
		return nil, err
	}
	var noticed []app.StuckOrder
	for _, c := range candidates {
		res, err := r.db.ExecContext(ctx, `UPDATE orders SET stuck_version = $1
			WHERE id = $2 AND version = $1 AND stuck_version <> $1`, c.Order.Version, c.Order.ID)
		if err != nil {
			return noticed, fmt.Errorf("mark stuck order: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return noticed, fmt.Errorf("mark stuck order: %w", err)
		}
		if n == 1 { // else it moved on, or another replica marked it first
			noticed = append(noticed, c)
		}
	}
	return noticed, nil
}

// CountStuck implements app.SagaRepository.
func (r *OrderSQLRepository) CountStuck(ctx context.Context, before time.Time) (app.StuckCounts, error) {
	counts := app.StuckCounts{ByStep: map[domain.Step]int64{}}
	rows, err := r.db.QueryContext(ctx, `SELECT saga_step, COUNT(*) FROM orders WHERE `+stuckWhere+` GROUP BY saga_step`,
		db.FormatTime(before))
	if err != nil {
		return counts, fmt.Errorf("count stuck orders: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			step string
			n    int64
		)
		if err := rows.Scan(&step, &n); err != nil {
			return counts, fmt.Errorf("scan stuck count: %w", err)
		}
		counts.ByStep[domain.Step(step)] = n
	}
	if err := rows.Err(); err != nil {
		return counts, fmt.Errorf("read stuck counts: %w", err)
	}
	if err := r.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM orders WHERE status = $1`,
		string(domain.StatusNeedsAttention)).Scan(&counts.NeedsAttention); err != nil {
		return counts, fmt.Errorf("count orders needing attention: %w", err)
	}
	return counts, nil
}

// ListStuck implements app.SagaRepository.
func (r *OrderSQLRepository) ListStuck(ctx context.Context, before time.Time, after string, limit int) ([]app.StuckOrder, error) {
	args := []any{db.FormatTime(before), string(domain.StatusNeedsAttention)}
	query := `SELECT ` + stuckColumns + ` FROM orders WHERE ((` + stuckWhere + `) OR status = $2)`
	if after != "" {
		args = append(args, after)
		query += ` AND id < $` + strconv.Itoa(len(args))
	}
	args = append(args, limit)
	query += ` ORDER BY id DESC LIMIT $` + strconv.Itoa(len(args))
	return r.queryStuck(ctx, query, args...)
}

func (r *OrderSQLRepository) queryStuck(ctx context.Context, query string, args ...any) ([]app.StuckOrder, error) {
	rows, err := r.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("select stuck orders: %w", err)
	}
	defer rows.Close()
	var out []app.StuckOrder
	for rows.Next() {
		var (
			o    app.StuckOrder
			step string
		)
		o.Order, err = scanView(rows, &step, &o.Attempts, db.Time(&o.NextAttemptAt), &o.LastError)
		if err != nil {
			return nil, fmt.Errorf("scan stuck order: %w", err)
		}
		o.Step = domain.Step(step)
		if o.Step == domain.StepDone {
			o.NextAttemptAt = time.Time{} // nothing is due
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read stuck orders: %w", err)
	}
	return out, nil
}

func encodeView(o domain.Order) (items, addr string, err error) {
	it := o.Items
	if it == nil {
		it = []domain.Item{}
	}
	ib, err := json.Marshal(it)
	if err != nil {
		return "", "", fmt.Errorf("encode items: %w", err)
	}
	ab, err := json.Marshal(o.ShippingAddress)
	if err != nil {
		return "", "", fmt.Errorf("encode address: %w", err)
	}
	return string(ib), string(ab), nil
}

type rowScanner interface{ Scan(dest ...any) error }

// scanView scans the viewColumns, then the columns of more.
func scanView(row rowScanner, more ...any) (domain.View, error) {
	var (
		v           domain.View
		status      string
		items, addr []byte
	)
	err := row.Scan(append([]any{&v.ID, &v.UserID, &v.Email, &status, &items, &v.TotalCents, &v.Currency, &addr,
		&v.Reason, &v.Refunded, &v.PaymentID, &v.Version, db.Time(&v.CreatedAt), db.Time(&v.UpdatedAt)}, more...)...)
	if err != nil {
		return domain.View{}, err
	}
	v.Status = domain.Status(status)
	if err := json.Unmarshal(items, &v.Items); err != nil {
		return domain.View{}, fmt.Errorf("decode items of order %s: %w", v.ID, err)
	}
	if err := json.Unmarshal(addr, &v.ShippingAddress); err != nil {
		return domain.View{}, fmt.Errorf("decode address of order %s: %w", v.ID, err)
	}
	return v, nil
}

// Package adapters implements the inventory's repository with SQL that runs
// unchanged on SQLite and PostgreSQL.
package adapters

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mercato-dev/mercato/internal/inventory/app"
	"github.com/mercato-dev/mercato/internal/inventory/domain"
	"github.com/mercato-dev/mercato/internal/platform/db"
)

// StockSQLRepository is the app.StockRepository on SQLite or PostgreSQL.
//
// Correctness under concurrency rests on conditional UPDATEs, not on
// reading first: a stock row only changes through applyDelta, whose WHERE
// clause requires the row to satisfy every invariant after the change, and
// a reservation only changes status through an UPDATE conditioned on the
// status it was read in. On PostgreSQL (READ COMMITTED) a blocked UPDATE
// re-checks its WHERE clause against the row as the other transaction left
// it; on SQLite transactions are serialised (BEGIN IMMEDIATE). The CHECK
// constraints of the schema restate the invariants as a last line of
// defence. Stock rows are always changed in sku order, so transactions
// touching several skus cannot deadlock.
type StockSQLRepository struct {
	db *db.DB
}

var _ app.StockRepository = (*StockSQLRepository)(nil)

// NewStockSQLRepository returns the repository over d, whose schema the
// inventory's migrations created.
func NewStockSQLRepository(d *db.DB) *StockSQLRepository {
	return &StockSQLRepository{db: d}
}

// errRaced means a conditional update found the row changed since it was
// read; the caller reads again.
var errRaced = errors.New("row changed concurrently")

// raceAttempts bounds re-reads after lost races in one transaction; losing
// this many in a row needs as many concurrent writers to the same row.
const raceAttempts = 10

// Stock implements app.StockRepository.
func (r *StockSQLRepository) Stock(ctx context.Context, sku string) (domain.Stock, error) {
	st, err := readStock(ctx, r.db, sku)
	if err != nil {
		return domain.Stock{}, err
	}
	return st, nil
}

// querier is a *sql.DB or a *sql.Tx.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func readStock(ctx context.Context, q querier, sku string) (domain.Stock, error) {
	st := domain.Stock{SKU: sku}
	err := q.QueryRowContext(ctx, `SELECT on_hand, reserved, sold FROM stock WHERE sku = $1`, sku).
		Scan(&st.OnHand, &st.Reserved, &st.Sold)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return domain.Stock{}, fmt.Errorf("read stock: %w", err)
	}
	return st, nil
}

// SetStock implements app.StockRepository. The new on_hand is written only if
// on_hand is still what was read (so the ledger's delta is exact) and
// reserved is not above it (so a reservation committed in between cannot
// be left uncovered).
func (r *StockSQLRepository) SetStock(ctx context.Context, sku string, onHand int32, now time.Time) (domain.Stock, error) {
	var out domain.Stock
	err := r.db.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO stock (sku, on_hand, reserved, sold, updated_at) VALUES ($1, 0, 0, 0, $2)
			 ON CONFLICT (sku) DO NOTHING`, sku, db.FormatTime(now)); err != nil {
			return fmt.Errorf("create stock row: %w", err)
		}
		for range raceAttempts {
			st, err := readStock(ctx, tx, sku)
			if err != nil {
				return err
			}
			if st.Reserved > onHand {
				return &domain.BelowReservedError{Reserved: st.Reserved}
			}
			if st.OnHand == onHand {
				out = st
				return nil
			}
			res, err := tx.ExecContext(ctx,
				`UPDATE stock SET on_hand = $2, updated_at = $3
				 WHERE sku = $1 AND on_hand = $4 AND reserved <= $2`,
				sku, onHand, db.FormatTime(now), st.OnHand)
			if err != nil {
				return fmt.Errorf("update stock: %w", err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return fmt.Errorf("update stock: %w", err)
			} else if n == 0 {
				continue
			}
			delta := domain.Delta{OnHand: onHand - st.OnHand}
			if err := recordMovement(ctx, tx, sku, "", domain.MovementSet, delta, now); err != nil {
				return err
			}
			st.OnHand = onHand
			out = st
			return nil
		}
		return app.ErrBusy
	})
	if err != nil {
		return domain.Stock{}, err
	}
	return out, nil
}

// Reserve implements app.StockRepository. The reservation row is inserted
// first: on PostgreSQL a concurrent Reserve for the same order then waits
// on it and, once this one commits, finds it; if this one rolls back (out
// of stock), the other proceeds as if it were first.
func (r *StockSQLRepository) Reserve(ctx context.Context, res domain.Reservation, now time.Time) (domain.Reservation, bool, error) {
	// What is stored is what is returned, now and on every replay.
	res.ExpiresAt = res.ExpiresAt.UTC().Truncate(time.Microsecond)
	var (
		stored  domain.Reservation
		created bool
	)
	err := r.db.InTx(ctx, func(tx *sql.Tx) error {
		ins, err := tx.ExecContext(ctx,
			`INSERT INTO reservations (order_id, status, expires_at, created_at, updated_at)
			 VALUES ($1, $2, $3, $4, $4) ON CONFLICT (order_id) DO NOTHING`,
			res.OrderID, string(domain.StatusReserved), db.FormatTime(res.ExpiresAt), db.FormatTime(now))
		if err != nil {
			return fmt.Errorf("insert reservation: %w", err)
		}
		if n, err := ins.RowsAffected(); err != nil {
			return fmt.Errorf("insert reservation: %w", err)
		} else if n == 0 {
			stored, err = readReservation(ctx, tx, res.OrderID)
			return err
		}
		for _, l := range res.Lines {
			if _, err := tx.ExecContext(ctx,
				`INSERT INTO reservation_lines (order_id, sku, quantity) VALUES ($1, $2, $3)`,
				res.OrderID, l.SKU, l.Quantity); err != nil {
				return fmt.Errorf("insert reservation line: %w", err)
			}
			ok, err := applyDelta(ctx, tx, l.SKU, domain.EffectOf(domain.StatusReserved, l.Quantity), now)
			if err != nil {
				return err
			}
			if !ok {
				return &domain.OutOfStockError{SKU: l.SKU}
			}
			if err := recordMovement(ctx, tx, l.SKU, res.OrderID, domain.MovementReserve,
				domain.EffectOf(domain.StatusReserved, l.Quantity), now); err != nil {
				return err
			}
		}
		stored, created = res, true
		return nil
	})
	if err != nil {
		return domain.Reservation{}, false, err
	}
	return stored, created, nil
}

// Transition implements app.StockRepository.
func (r *StockSQLRepository) Transition(ctx context.Context, orderID string, to domain.Status, now time.Time) (domain.Reservation, bool, error) {
	var (
		out   domain.Reservation
		moved bool
	)
	err := r.db.InTx(ctx, func(tx *sql.Tx) error {
		for range raceAttempts {
			res, err := readReservation(ctx, tx, orderID)
			if err != nil {
				return err
			}
			apply, err := res.Move(to, now)
			if err != nil {
				return err
			}
			if !apply {
				out = res
				return nil
			}
			err = moveReservation(ctx, tx, res, to, now)
			if errors.Is(err, errRaced) {
				continue
			}
			if err != nil {
				return err
			}
			res.Status = to
			out, moved = res, true
			return nil
		}
		return app.ErrBusy
	})
	if err != nil {
		return domain.Reservation{}, false, err
	}
	return out, moved, nil
}

// moveReservation changes res's status from what it was read in to to and
// applies the stock effect of every line, or returns errRaced, changing
// nothing, when the status changed since.
func moveReservation(ctx context.Context, tx *sql.Tx, res domain.Reservation, to domain.Status, now time.Time) error {
	query := `UPDATE reservations SET status = $3, updated_at = $4 WHERE order_id = $1 AND status = $2`
	if to == domain.StatusExpired {
		// The expiry is fixed at creation, so this only restates the
		// decision Move took; it keeps the sweep's UPDATE self-evidently
		// safe.
		query += ` AND expires_at <= $4`
	}
	upd, err := tx.ExecContext(ctx, query, res.OrderID, string(res.Status), string(to), db.FormatTime(now))
	if err != nil {
		return fmt.Errorf("update reservation status: %w", err)
	}
	if n, err := upd.RowsAffected(); err != nil {
		return fmt.Errorf("update reservation status: %w", err)
	} else if n == 0 {
		return errRaced
	}
	kind := domain.MovementKind(to)
	for _, l := range res.Lines {
		delta := domain.EffectOf(to, l.Quantity)
		ok, err := applyDelta(ctx, tx, l.SKU, delta, now)
		if err != nil {
			return err
		}
		if !ok {
			// The reservation row says the units are held (or sold), the
			// stock row disagrees: a bug or a hand-edited database. Refuse
			// rather than break an invariant.
			return fmt.Errorf("stock of sku %s does not cover %s of order %s", l.SKU, kind, res.OrderID)
		}
		if err := recordMovement(ctx, tx, l.SKU, res.OrderID, kind, delta, now); err != nil {
			return err
		}
	}
	return nil
}

// applyDelta adds d to sku's stock row if the row exists and still
// satisfies every invariant afterwards; it reports whether it did. For a
// reservation this is "available >= quantity", checked atomically.
func applyDelta(ctx context.Context, tx *sql.Tx, sku string, d domain.Delta, now time.Time) (bool, error) {
	res, err := tx.ExecContext(ctx,
		`UPDATE stock
		 SET on_hand = on_hand + $2, reserved = reserved + $3, sold = sold + $4, updated_at = $5
		 WHERE sku = $1
		   AND on_hand + $2 >= 0 AND reserved + $3 >= 0 AND sold + $4 >= 0
		   AND reserved + $3 <= on_hand + $2`,
		sku, d.OnHand, d.Reserved, d.Sold, db.FormatTime(now))
	if err != nil {
		return false, fmt.Errorf("update stock of %s: %w", sku, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("update stock of %s: %w", sku, err)
	}
	return n == 1, nil
}

func recordMovement(ctx context.Context, tx *sql.Tx, sku, orderID, kind string, d domain.Delta, now time.Time) error {
	var order any
	if orderID != "" {
		order = orderID
	}
	_, err := tx.ExecContext(ctx,
		`INSERT INTO stock_movements (sku, order_id, kind, on_hand_delta, reserved_delta, sold_delta, at)
		 VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		sku, order, kind, d.OnHand, d.Reserved, d.Sold, db.FormatTime(now))
	if err != nil {
		return fmt.Errorf("record stock movement: %w", err)
	}
	return nil
}

// RecordTombstone implements app.StockRepository.
func (r *StockSQLRepository) RecordTombstone(ctx context.Context, orderID string, now time.Time) (bool, error) {
	res, err := r.db.ExecContext(ctx,
		`INSERT INTO reservations (order_id, status, expires_at, created_at, updated_at)
		 VALUES ($1, $2, NULL, $3, $3) ON CONFLICT (order_id) DO NOTHING`,
		orderID, string(domain.StatusReleased), db.FormatTime(now))
	if err != nil {
		return false, fmt.Errorf("record released reservation: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("record released reservation: %w", err)
	}
	return n == 1, nil
}

// Reservation implements app.StockRepository.
func (r *StockSQLRepository) Reservation(ctx context.Context, orderID string) (domain.Reservation, error) {
	// No transaction needed: lines are written with their reservation row
	// and never change, so whatever status is read, the lines match it.
	return readReservation(ctx, r.db, orderID)
}

func readReservation(ctx context.Context, q querier, orderID string) (domain.Reservation, error) {
	res := domain.Reservation{OrderID: orderID}
	var status string
	err := q.QueryRowContext(ctx, `SELECT status, expires_at FROM reservations WHERE order_id = $1`, orderID).
		Scan(&status, db.NullTime(&res.ExpiresAt))
	if errors.Is(err, sql.ErrNoRows) {
		return domain.Reservation{}, domain.ErrReservationNotFound
	}
	if err != nil {
		return domain.Reservation{}, fmt.Errorf("read reservation: %w", err)
	}
	res.Status = domain.Status(status)
	rows, err := q.QueryContext(ctx, `SELECT sku, quantity FROM reservation_lines WHERE order_id = $1`, orderID)
	if err != nil {
		return domain.Reservation{}, fmt.Errorf("read reservation lines: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var l domain.Line
		if err := rows.Scan(&l.SKU, &l.Quantity); err != nil {
			return domain.Reservation{}, fmt.Errorf("read reservation lines: %w", err)
		}
		res.Lines = append(res.Lines, l)
	}
	if err := rows.Err(); err != nil {
		return domain.Reservation{}, fmt.Errorf("read reservation lines: %w", err)
	}
	// Byte order, as domain.NormalizeLines sorts, whatever the collation.
	slices.SortFunc(res.Lines, func(a, b domain.Line) int { return strings.Compare(a.SKU, b.SKU) })
	return res, nil
}

// ExpiredReservations implements app.StockRepository.
func (r *StockSQLRepository) ExpiredReservations(ctx context.Context, now time.Time, limit int) ([]string, error) {
	rows, err := r.db.QueryContext(ctx,
		`SELECT order_id FROM reservations WHERE status = $1 AND expires_at <= $2
		 ORDER BY expires_at, order_id LIMIT $3`,
		string(domain.StatusReserved), db.FormatTime(now), limit)
	if err != nil {
		return nil, fmt.Errorf("find expired reservations: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("find expired reservations: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find expired reservations: %w", err)
	}
	return ids, nil
}

// Movements returns sku's ledger, oldest first: what changed its stock row,
// when and for which order. Summing the deltas gives the row.
func (r *StockSQLRepository) Movements(ctx context.Context, sku string) ([]domain.Movement, error) {
	rows, err := r.db.QueryContext(ctx,
		`SELECT sku, order_id, kind, on_hand_delta, reserved_delta, sold_delta, at
		 FROM stock_movements WHERE sku = $1 ORDER BY id`, sku)
	if err != nil {
		return nil, fmt.Errorf("read stock movements: %w", err)
	}
	defer rows.Close()
	var out []domain.Movement
	for rows.Next() {
		var (
			m     domain.Movement
			order sql.NullString
		)
		if err := rows.Scan(&m.SKU, &order, &m.Kind, &m.Delta.OnHand, &m.Delta.Reserved, &m.Delta.Sold,
			db.Time(&m.At)); err != nil {
			return nil, fmt.Errorf("read stock movements: %w", err)
		}
		m.OrderID = order.String
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read stock movements: %w", err)
	}
	return out, nil
}

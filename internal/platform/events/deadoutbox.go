package events

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/mercato-dev/mercato/internal/platform/db"
)

// DeadOutboxRow is an outbox row the relay moved aside after JetStream
// refused it WithMaxAttempts times.
type DeadOutboxRow struct {
	// EventID is the event's id: what a filter names.
	EventID string `json:"event_id"`
	Subject string `json:"subject"`
	// Payload is the payload as JSON: itself when it is JSON, else a JSON
	// string of it.
	Payload json.RawMessage `json:"payload"`
	// Attempts is how many publishes were refused, Error the last refusal.
	Attempts int    `json:"attempts"`
	Error    string `json:"error"`
	// CreatedAt is when the event was added, DeadAt when it was moved aside.
	CreatedAt time.Time `json:"created_at"`
	DeadAt    time.Time `json:"dead_at"`
}

// DeadOutboxFilter selects dead outbox rows. The zero value selects all.
type DeadOutboxFilter struct {
	// EventID keeps the row of this event; there is then an error wrapping
	// ErrNoSuchDeadLetter if there is none.
	EventID string
	// Limit keeps the first (oldest) Limit; 0 keeps all.
	Limit int
}

// ListDeadOutbox returns the rows of d's outbox_dead that f selects, in
// the order they were added to the outbox.
func ListDeadOutbox(ctx context.Context, d *db.DB, f DeadOutboxFilter) ([]DeadOutboxRow, error) {
	rows, _, err := selectDeadOutbox(ctx, d, f)
	return rows, err
}

// ReplayDeadOutbox puts the dead outbox rows f selects back into the
// outbox, with a fresh count of attempts, and deletes them from
// outbox_dead, in one transaction; the relay of the service publishes them
// at its next poll, after the rows already waiting (a replayed row takes a
// new place at the end of the outbox). It returns the rows replayed. Fix
// what made JetStream refuse them first (create the stream their subject
// needs, raise its size limit), or they end up aside again.
func ReplayDeadOutbox(ctx context.Context, d *db.DB, f DeadOutboxFilter) ([]DeadOutboxRow, error) {
	var replayed []DeadOutboxRow
	err := d.InTx(ctx, func(tx *sql.Tx) error {
		rows, seqs, err := selectDeadOutbox(ctx, tx, f)
		if err != nil {
			return err
		}
		for i, row := range rows {
			// An event id already back in the outbox (re-added since) is
			// there to be published: the dead copy is only dropped.
			if _, err := tx.ExecContext(ctx,
				`INSERT INTO outbox (event_id, subject, payload, headers)
				 SELECT event_id, subject, payload, headers FROM outbox_dead WHERE seq = $1
				 ON CONFLICT (event_id) DO NOTHING`, seqs[i]); err != nil {
				return fmt.Errorf("replay outbox event %s: %w", row.EventID, err)
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM outbox_dead WHERE seq = $1`, seqs[i]); err != nil {
				return fmt.Errorf("replay outbox event %s: %w", row.EventID, err)
			}
		}
		replayed = rows
		return nil
	})
	if err != nil {
		return nil, err
	}
	return replayed, nil
}

type rowQuerier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func selectDeadOutbox(ctx context.Context, q rowQuerier, f DeadOutboxFilter) ([]DeadOutboxRow, []int64, error) {
	query := `SELECT seq, event_id, subject, payload, attempts, last_error, created_at, dead_at FROM outbox_dead`
	var args []any
	if f.EventID != "" {
		query += ` WHERE event_id = $1`
		args = append(args, f.EventID)
	}
	query += ` ORDER BY seq`
	if f.Limit > 0 {
		query += fmt.Sprintf(` LIMIT %d`, f.Limit)
	}
	rs, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, nil, fmt.Errorf("read dead outbox rows: %w", err)
	}
	defer rs.Close()
	var (
		rows []DeadOutboxRow
		seqs []int64
	)
	for rs.Next() {
		var (
			row     DeadOutboxRow
			seq     int64
			payload []byte
		)
		if err := rs.Scan(&seq, &row.EventID, &row.Subject, &payload, &row.Attempts, &row.Error,
			eventsTime(&row.CreatedAt), eventsTime(&row.DeadAt)); err != nil {
			return nil, nil, fmt.Errorf("read dead outbox row: %w", err)
		}
		row.Payload = asJSON(payload)
		rows = append(rows, row)
		seqs = append(seqs, seq)
	}
	if err := rs.Err(); err != nil {
		return nil, nil, fmt.Errorf("read dead outbox rows: %w", err)
	}
	if f.EventID != "" && len(rows) == 0 {
		return nil, nil, fmt.Errorf("%w: no dead outbox row of event %q", ErrNoSuchDeadLetter, f.EventID)
	}
	return rows, seqs, nil
}

// eventsTime scans a time column of the events tables: a TIMESTAMPTZ from
// PostgreSQL, SQLite's own text format ("2006-01-02 15:04:05.000", UTC)
// from SQLite.
func eventsTime(t *time.Time) sql.Scanner { return eventsTimeScanner{t} }

type eventsTimeScanner struct{ t *time.Time }

func (s eventsTimeScanner) Scan(src any) error {
	var text string
	switch v := src.(type) {
	case time.Time:
		*s.t = v.UTC()
		return nil
	case string:
		text = v
	case []byte:
		text = string(v)
	default:
		return fmt.Errorf("events time: cannot scan %T", src)
	}
	t, err := time.Parse(sqliteTimeLayout, text)
	if err != nil {
		return fmt.Errorf("events time %q: %w", text, err)
	}
	*s.t = t
	return nil
}

// sqliteTimeLayout is strftime('%Y-%m-%d %H:%M:%f'), in which the events
// migrations keep SQLite times.
const sqliteTimeLayout = "2006-01-02 15:04:05.999"

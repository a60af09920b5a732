// Package adapters implements the notifications' repository (one SQL
// repository for SQLite and PostgreSQL) and its delivery sinks.
package adapters

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/mercato-dev/mercato/internal/notifications/app"
	"github.com/mercato-dev/mercato/internal/notifications/domain"
	"github.com/mercato-dev/mercato/internal/platform/db"
)

// NotificationSQLRepository is the app.NotificationRepository on SQLite or
// PostgreSQL.
type NotificationSQLRepository struct {
	db *db.DB
}

var _ app.NotificationRepository = (*NotificationSQLRepository)(nil)

// NewNotificationSQLRepository returns the repository over d, whose schema
// the notifications' migrations created.
func NewNotificationSQLRepository(d *db.DB) *NotificationSQLRepository {
	return &NotificationSQLRepository{db: d}
}

// RememberRecipient implements app.NotificationRepository.
func (r *NotificationSQLRepository) RememberRecipient(ctx context.Context, tx *sql.Tx, rc domain.Recipient) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO recipients (user_id, email, name, updated_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (user_id) DO UPDATE SET email = excluded.email, name = excluded.name, updated_at = excluded.updated_at`,
		rc.UserID, rc.Email, rc.Name, db.FormatTime(time.Now()))
	if err != nil {
		return fmt.Errorf("upsert recipient: %w", err)
	}
	return nil
}

// Recipient implements app.NotificationRepository.
func (r *NotificationSQLRepository) Recipient(ctx context.Context, tx *sql.Tx, userID string) (domain.Recipient, bool, error) {
	rc := domain.Recipient{UserID: userID}
	err := tx.QueryRowContext(ctx, `SELECT email, name FROM recipients WHERE user_id = $1`, userID).Scan(&rc.Email, &rc.Name)
	if errors.Is(err, sql.ErrNoRows) {
		return rc, false, nil
	}
	if err != nil {
		return domain.Recipient{}, false, fmt.Errorf("select recipient: %w", err)
	}
	return rc, true, nil
}

// Insert implements app.NotificationRepository.
func (r *NotificationSQLRepository) Insert(ctx context.Context, tx *sql.Tx, n domain.Notification) (bool, error) {
	res, err := tx.ExecContext(ctx, `INSERT INTO notifications
		(id, user_id, event_id, kind, channel, recipient, subject, body, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (event_id) DO NOTHING`,
		n.ID, n.UserID, n.EventID, n.Kind, n.Channel, n.Recipient, n.Subject, n.Body, db.FormatTime(n.CreatedAt))
	if err != nil {
		return false, fmt.Errorf("insert notification: %w", err)
	}
	inserted, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("insert notification: %w", err)
	}
	return inserted == 1, nil
}

// List implements app.NotificationRepository.
func (r *NotificationSQLRepository) List(ctx context.Context, userID, before string, limit int) ([]domain.Notification, error) {
	query := `SELECT id, user_id, event_id, kind, channel, recipient, subject, body, created_at
		FROM notifications WHERE user_id = $1`
	args := []any{userID}
	if before != "" {
		query += ` AND id < $2`
		args = append(args, before)
	}
	query += fmt.Sprintf(` ORDER BY id DESC LIMIT %d`, limit)
	rows, err := r.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("select notifications: %w", err)
	}
	defer rows.Close()
	out := []domain.Notification{}
	for rows.Next() {
		var n domain.Notification
		if err := rows.Scan(&n.ID, &n.UserID, &n.EventID, &n.Kind, &n.Channel, &n.Recipient, &n.Subject, &n.Body,
			db.Time(&n.CreatedAt)); err != nil {
			return nil, fmt.Errorf("scan notification: %w", err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("select notifications: %w", err)
	}
	return out, nil
}

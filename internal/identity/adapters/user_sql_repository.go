package adapters

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/mercato-dev/mercato/internal/identity/domain"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/events"
)

// UserSQLRepository stores accounts. It is safe for concurrent use.
type UserSQLRepository struct {
	db     *db.DB
	outbox *events.Outbox
}

// NewUserSQLRepository returns a repository on d; events go through outbox.
func NewUserSQLRepository(d *db.DB, outbox *events.Outbox) *UserSQLRepository {
	return &UserSQLRepository{db: d, outbox: outbox}
}

// CreateUser inserts u and, in the same transaction, queues evs in the
// outbox, waking the relay after the commit. It returns
// domain.ErrEmailTaken when the email is already registered.
func (r *UserSQLRepository) CreateUser(ctx context.Context, u domain.User, evs ...events.Event) error {
	err := r.db.InTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `
			INSERT INTO users (id, email, name, role, password_hash, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			u.ID, u.Email, u.Name, u.Role, u.PasswordHash, dbTime(u.CreatedAt), dbTime(u.UpdatedAt))
		if db.IsUniqueViolation(err) {
			return domain.ErrEmailTaken
		}
		if err != nil {
			return fmt.Errorf("insert user: %w", err)
		}
		for _, ev := range evs {
			if err := r.outbox.Add(ctx, tx, ev); err != nil {
				return fmt.Errorf("queue %s: %w", ev.Subject, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(evs) > 0 {
		r.outbox.Wake()
	}
	return nil
}

const userColumns = `id, email, name, role, password_hash, created_at, updated_at`

// UserByEmail returns the account with the (normalised) email, or
// domain.ErrUserNotFound.
func (r *UserSQLRepository) UserByEmail(ctx context.Context, email string) (domain.User, error) {
	return r.scanUser(r.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE email = $1`, email))
}

// UserByID returns the account with the id, or domain.ErrUserNotFound.
func (r *UserSQLRepository) UserByID(ctx context.Context, id string) (domain.User, error) {
	return r.scanUser(r.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id))
}

func (r *UserSQLRepository) scanUser(row *sql.Row) (domain.User, error) {
	var u domain.User
	err := row.Scan(&u.ID, &u.Email, &u.Name, &u.Role, &u.PasswordHash, &u.CreatedAt, &u.UpdatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return domain.User{}, domain.ErrUserNotFound
	}
	if err != nil {
		return domain.User{}, fmt.Errorf("read user: %w", err)
	}
	u.CreatedAt, u.UpdatedAt = u.CreatedAt.UTC(), u.UpdatedAt.UTC()
	return u, nil
}

// SetPasswordHash replaces the stored hash of a user's unchanged password
// (after hashing parameters changed). It returns domain.ErrUserNotFound
// when the user is gone.
func (r *UserSQLRepository) SetPasswordHash(ctx context.Context, id, hash string, now time.Time) error {
	res, err := r.db.ExecContext(ctx, `UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1`,
		id, hash, dbTime(now))
	return affectedOne(res, err, "update password hash", domain.ErrUserNotFound)
}

// SetCredentials sets a user's password hash and role and, in the same
// transaction, revokes every session the user has, so whoever held the
// account before cannot carry on with a refresh token. It returns
// domain.ErrUserNotFound when the user is gone.
func (r *UserSQLRepository) SetCredentials(ctx context.Context, id, hash, role string, now time.Time) error {
	return r.db.InTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE users SET password_hash = $2, role = $3, updated_at = $4 WHERE id = $1`,
			id, hash, role, dbTime(now))
		if err := affectedOne(res, err, "update credentials", domain.ErrUserNotFound); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `
			UPDATE refresh_families SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL`,
			id, dbTime(now)); err != nil {
			return fmt.Errorf("revoke sessions: %w", err)
		}
		return nil
	})
}

// affectedOne turns an UPDATE's outcome into an error: the statement's own
// error, or notFound when no row matched.
func affectedOne(res sql.Result, err error, what string, notFound error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if n == 0 {
		return notFound
	}
	return nil
}

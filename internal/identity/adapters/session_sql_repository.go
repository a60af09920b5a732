package adapters

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/mercato-dev/mercato/internal/identity/domain"
	"github.com/mercato-dev/mercato/internal/platform/db"
)

// SessionSQLRepository stores refresh-token families. It is safe for
// concurrent use, and its operations are safe against each other across
// processes: every decision about a family is made under that family's row
// lock (PostgreSQL) or the database write lock (SQLite).
type SessionSQLRepository struct {
	db *db.DB
}

// NewSessionSQLRepository returns a repository on d.
func NewSessionSQLRepository(d *db.DB) *SessionSQLRepository { return &SessionSQLRepository{db: d} }

// CreateSession stores a new family with its first token.
func (r *SessionSQLRepository) CreateSession(ctx context.Context, family domain.RefreshFamily, first domain.RefreshToken) error {
	return r.db.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO refresh_families (id, user_id, created_at, last_used_at) VALUES ($1, $2, $3, $3)`,
			family.ID, family.UserID, dbTime(family.CreatedAt)); err != nil {
			return fmt.Errorf("insert refresh family: %w", err)
		}
		return insertToken(ctx, tx, first)
	})
}

func insertToken(ctx context.Context, tx *sql.Tx, t domain.RefreshToken) error {
	if _, err := tx.ExecContext(ctx, `
		INSERT INTO refresh_tokens (token_hash, family_id, user_id, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5)`,
		t.Hash, t.FamilyID, t.UserID, dbTime(t.CreatedAt), dbTime(t.ExpiresAt)); err != nil {
		return fmt.Errorf("insert refresh token: %w", err)
	}
	return nil
}

// RotateRefreshToken exchanges the token whose hash is given for next
// (whose family and user are taken from the old token), all in one
// transaction, and returns the old token.
//
// Errors: domain.ErrRefreshTokenInvalid when the token is unknown, expired
// or its family revoked; domain.ErrRefreshTokenReused when it was exchanged
// before — including by a concurrent call that won the race for it — in
// which case the family is revoked (committed) before returning.
func (r *SessionSQLRepository) RotateRefreshToken(ctx context.Context, hash []byte, next domain.RefreshToken, now time.Time) (domain.RefreshToken, error) {
	var old domain.RefreshToken
	reused := false
	err := r.db.InTx(ctx, func(tx *sql.Tx) error {
		var used sql.NullTime
		err := tx.QueryRowContext(ctx, `
			SELECT family_id, user_id, created_at, expires_at, used_at FROM refresh_tokens WHERE token_hash = $1`,
			hash).Scan(&old.FamilyID, &old.UserID, &old.CreatedAt, &old.ExpiresAt, &used)
		if errors.Is(err, sql.ErrNoRows) {
			return domain.ErrRefreshTokenInvalid
		}
		if err != nil {
			return fmt.Errorf("read refresh token: %w", err)
		}
		old.Hash, old.UsedAt = hash, fromNull(used)
		switch err := old.CheckUsable(now); {
		case errors.Is(err, domain.ErrRefreshTokenReused):
			reused = true
			return revokeFamily(ctx, tx, old.FamilyID, now)
		case err != nil:
			return err
		}
		// The conditional update is the arbiter between concurrent
		// exchanges of one token: exactly one sees a row change.
		res, err := tx.ExecContext(ctx, `
			UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL`, hash, dbTime(now))
		if err := affectedOne(res, err, "mark refresh token used", errReuseDetected); err != nil {
			if !errors.Is(err, errReuseDetected) {
				return err
			}
			reused = true
			return revokeFamily(ctx, tx, old.FamilyID, now)
		}
		// Taking the family's row lock here orders this exchange against a
		// concurrent revocation: a revoked family never gets a new token.
		res, err = tx.ExecContext(ctx, `
			UPDATE refresh_families SET last_used_at = $2 WHERE id = $1 AND revoked_at IS NULL`,
			old.FamilyID, dbTime(now))
		if err := affectedOne(res, err, "touch refresh family", domain.ErrRefreshTokenInvalid); err != nil {
			return err
		}
		next.FamilyID, next.UserID = old.FamilyID, old.UserID
		return insertToken(ctx, tx, next)
	})
	if err != nil {
		return domain.RefreshToken{}, err
	}
	if reused {
		return old, domain.ErrRefreshTokenReused
	}
	old.UsedAt = now
	return old, nil
}

// errReuseDetected marks the lost race inside RotateRefreshToken.
var errReuseDetected = errors.New("refresh token already used")

func revokeFamily(ctx context.Context, tx *sql.Tx, familyID string, now time.Time) error {
	if _, err := tx.ExecContext(ctx, `
		UPDATE refresh_families SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL`,
		familyID, dbTime(now)); err != nil {
		return fmt.Errorf("revoke refresh family: %w", err)
	}
	return nil
}

// RevokeSession revokes the family of the token with the given hash if it
// belongs to userID, and reports whether a live family was revoked.
func (r *SessionSQLRepository) RevokeSession(ctx context.Context, hash []byte, userID string, now time.Time) (bool, error) {
	res, err := r.db.ExecContext(ctx, `
		UPDATE refresh_families SET revoked_at = $3
		WHERE revoked_at IS NULL AND user_id = $2
		  AND id = (SELECT family_id FROM refresh_tokens WHERE token_hash = $1)`,
		hash, userID, dbTime(now))
	if err != nil {
		return false, fmt.Errorf("revoke session: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("revoke session: %w", err)
	}
	return n > 0, nil
}

// Family returns the family with the id (for inspection and tests).
func (r *SessionSQLRepository) Family(ctx context.Context, id string) (domain.RefreshFamily, error) {
	var f domain.RefreshFamily
	var revoked sql.NullTime
	err := r.db.QueryRowContext(ctx, `SELECT id, user_id, created_at, revoked_at FROM refresh_families WHERE id = $1`, id).
		Scan(&f.ID, &f.UserID, &f.CreatedAt, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return domain.RefreshFamily{}, domain.ErrRefreshTokenInvalid
	}
	if err != nil {
		return domain.RefreshFamily{}, fmt.Errorf("read refresh family: %w", err)
	}
	f.CreatedAt, f.RevokedAt = f.CreatedAt.UTC(), fromNull(revoked)
	return f, nil
}

// PruneExpired deletes tokens that expired before now and families left
// without tokens, and returns how many tokens went. A pruned token is then
// merely unknown, which is refused just the same.
func (r *SessionSQLRepository) PruneExpired(ctx context.Context, now time.Time) (int64, error) {
	var n int64
	err := r.db.InTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM refresh_tokens WHERE expires_at < $1`, dbTime(now))
		if err != nil {
			return fmt.Errorf("prune refresh tokens: %w", err)
		}
		if n, err = res.RowsAffected(); err != nil {
			return fmt.Errorf("prune refresh tokens: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `
			DELETE FROM refresh_families
			WHERE NOT EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.family_id = refresh_families.id)`); err != nil {
			return fmt.Errorf("prune refresh families: %w", err)
		}
		return nil
	})
	return n, err
}

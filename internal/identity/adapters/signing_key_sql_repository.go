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

// SigningKeySQLRepository stores the token signing keys. The database is the
// one truth every replica reads; rotation steps are guarded so that
// replicas racing to rotate produce exactly one new key.
//
// The private key is stored as its raw Ed25519 seed: a demo-grade at-rest
// store, readable by anyone who can read the database. A production
// deployment would encrypt it with a KMS-held key or sign inside an HSM.
type SigningKeySQLRepository struct {
	db *db.DB
}

// NewSigningKeySQLRepository returns a repository on d.
func NewSigningKeySQLRepository(d *db.DB) *SigningKeySQLRepository {
	return &SigningKeySQLRepository{db: d}
}

// SigningKeys returns every stored key, oldest generation first.
func (r *SigningKeySQLRepository) SigningKeys(ctx context.Context) ([]domain.SigningKey, error) {
	rows, err := r.db.QueryContext(ctx, `
		SELECT generation, private_key, created_at, activates_at, retires_at FROM signing_keys ORDER BY generation`)
	if err != nil {
		return nil, fmt.Errorf("read signing keys: %w", err)
	}
	defer rows.Close()
	var keys []domain.SigningKey
	for rows.Next() {
		var (
			gen                int64
			seed               []byte
			created, activates time.Time
			retires            sql.NullTime
		)
		if err := rows.Scan(&gen, &seed, &created, &activates, &retires); err != nil {
			return nil, fmt.Errorf("read signing key: %w", err)
		}
		k, err := domain.SigningKeyFromSeed(seed, gen, created.UTC(), activates.UTC())
		if err != nil {
			return nil, fmt.Errorf("signing key generation %d: %w", gen, err)
		}
		k.RetiresAt = fromNull(retires)
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read signing keys: %w", err)
	}
	return keys, nil
}

// ApplyRotation carries out a plan in one transaction: insert next (if
// not nil), retire the key it replaces at next's activation, and delete the
// pruned keys. It reports false, changing nothing, when another process
// applied a rotation for the same generation first.
func (r *SigningKeySQLRepository) ApplyRotation(ctx context.Context, plan domain.RotationPlan, next *domain.SigningKey) (bool, error) {
	applied := true
	err := r.db.InTx(ctx, func(tx *sql.Tx) error {
		if next != nil {
			res, err := tx.ExecContext(ctx, `
				INSERT INTO signing_keys (kid, generation, private_key, created_at, activates_at)
				VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`,
				next.ID, next.Generation, next.PrivateKey.Seed(), dbTime(next.CreatedAt), dbTime(next.ActivatesAt))
			if err := affectedOne(res, err, "insert signing key", errLostRace); err != nil {
				return err
			}
			if plan.Retire != "" {
				res, err := tx.ExecContext(ctx, `
					UPDATE signing_keys SET retires_at = $2 WHERE kid = $1 AND retires_at IS NULL`,
					plan.Retire, dbTime(next.ActivatesAt))
				if err := affectedOne(res, err, "retire signing key", errLostRace); err != nil {
					return err
				}
			}
		}
		for _, kid := range plan.Prune {
			// Only a retired key may go: the newest key never is.
			if _, err := tx.ExecContext(ctx,
				`DELETE FROM signing_keys WHERE kid = $1 AND retires_at IS NOT NULL`, kid); err != nil {
				return fmt.Errorf("delete signing key: %w", err)
			}
		}
		return nil
	})
	if errors.Is(err, errLostRace) {
		applied = false
		err = nil
	}
	return applied, err
}

// errLostRace rolls back a rotation another process already made.
var errLostRace = errors.New("signing key rotation already applied")

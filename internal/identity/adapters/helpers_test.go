package adapters_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/identity"
	"github.com/mercato-dev/mercato/internal/identity/domain"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
)

// t0 is a fixed instant with sub-microsecond digits, to check what survives
// a round trip.
var t0 = time.Date(2030, 3, 4, 5, 6, 7, 891011121, time.UTC)

// forEachEngine runs test against a freshly migrated database on SQLite and
// on PostgreSQL.
func forEachEngine(t *testing.T, test func(t *testing.T, d *db.DB)) {
	t.Helper()
	for _, engine := range dbtest.Engines(t) {
		t.Run(engine.Name, func(t *testing.T) {
			require.NoError(t, identity.Migrate(t.Context(), db.Config{URL: engine.URL}))
			require.NoError(t, identity.Migrate(t.Context(), db.Config{URL: engine.URL}), "migrating twice changes nothing")
			test(t, dbtest.Open(t, engine.URL))
		})
	}
}

func newUser(email string) domain.User {
	return domain.User{
		ID: uuid.NewString(), Email: email, Name: "Ann", Role: domain.RoleCustomer,
		PasswordHash: "$argon2id$fake", CreatedAt: t0, UpdatedAt: t0,
	}
}

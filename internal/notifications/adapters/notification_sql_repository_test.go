package adapters_test

import (
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/notifications"
	"github.com/mercato-dev/mercato/internal/notifications/adapters"
	"github.com/mercato-dev/mercato/internal/notifications/domain"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
)

// TestNotificationSQLRepository runs one suite against every engine.
// Subtests share a database and keep apart by using fresh user ids.
func TestNotificationSQLRepository(t *testing.T) {
	for _, engine := range dbtest.Engines(t) {
		t.Run(engine.Name, func(t *testing.T) {
			d := dbtest.Open(t, engine.URL)
			require.NoError(t, notifications.MigrateDB(t.Context(), d))
			f := &fixture{db: d, repo: adapters.NewNotificationSQLRepository(d)}
			t.Run("insert and list", func(t *testing.T) { testInsertList(t, f) })
			t.Run("one notification per event", func(t *testing.T) { testOnePerEvent(t, f) })
			t.Run("a rolled back insert leaves nothing", func(t *testing.T) { testRollback(t, f) })
			t.Run("listing is per user and keyset paged", func(t *testing.T) { testListPaging(t, f) })
			t.Run("recipients", func(t *testing.T) { testRecipients(t, f) })
		})
	}
}

type fixture struct {
	db   *db.DB
	repo *adapters.NotificationSQLRepository
}

func newNotification(userID string) domain.Notification {
	return domain.Notification{
		ID: uuid.Must(uuid.NewV7()).String(), UserID: userID, EventID: uuid.NewString(),
		Kind: domain.SubjectOrderConfirmed, Channel: domain.ChannelEmail, Recipient: "ada@example.com",
		Subject: "Your order is confirmed", Body: "Hi Ada,\n\n  2 × Kettle  €109.98 — ünïcödé\n",
		CreatedAt: time.Now().UTC().Truncate(time.Microsecond),
	}
}

// insert stores n in its own transaction and reports whether it was new.
func (f *fixture) insert(t *testing.T, n domain.Notification) bool {
	t.Helper()
	var inserted bool
	require.NoError(t, f.db.InTx(t.Context(), func(tx *sql.Tx) error {
		var err error
		inserted, err = f.repo.Insert(t.Context(), tx, n)
		return err
	}))
	return inserted
}

func (f *fixture) list(t *testing.T, userID, before string, limit int) []domain.Notification {
	t.Helper()
	got, err := f.repo.List(t.Context(), userID, before, limit)
	require.NoError(t, err)
	return got
}

func testInsertList(t *testing.T, f *fixture) {
	user := uuid.NewString()
	require.Empty(t, f.list(t, user, "", 10))
	older := newNotification(user)
	newer := newNotification(user)
	require.True(t, f.insert(t, older))
	require.True(t, f.insert(t, newer))
	require.Equal(t, []domain.Notification{newer, older}, f.list(t, user, "", 10), "newest first, every field kept")
}

func testOnePerEvent(t *testing.T, f *fixture) {
	user := uuid.NewString()
	first := newNotification(user)
	require.True(t, f.insert(t, first))
	again := newNotification(user)
	again.EventID = first.EventID
	again.Subject = "a second try"
	require.False(t, f.insert(t, again), "a second notification for one event is not stored")
	require.Equal(t, []domain.Notification{first}, f.list(t, user, "", 10))
}

func testRollback(t *testing.T, f *fixture) {
	user := uuid.NewString()
	failure := errors.New("sink failed")
	err := f.db.InTx(t.Context(), func(tx *sql.Tx) error {
		inserted, err := f.repo.Insert(t.Context(), tx, newNotification(user))
		require.NoError(t, err)
		require.True(t, inserted)
		return failure
	})
	require.ErrorIs(t, err, failure)
	require.Empty(t, f.list(t, user, "", 10))
}

func testListPaging(t *testing.T, f *fixture) {
	alice, bob := uuid.NewString(), uuid.NewString()
	var all []domain.Notification
	for range 7 {
		n := newNotification(alice)
		require.True(t, f.insert(t, n))
		require.True(t, f.insert(t, newNotification(bob)))
		all = append([]domain.Notification{n}, all...) // newest first
	}
	page1 := f.list(t, alice, "", 3)
	require.Equal(t, all[:3], page1)
	page2 := f.list(t, alice, page1[2].ID, 3)
	require.Equal(t, all[3:6], page2)
	page3 := f.list(t, alice, page2[2].ID, 3)
	require.Equal(t, all[6:], page3)
	for _, n := range f.list(t, bob, "", 100) {
		require.Equal(t, bob, n.UserID, "Bob's listing holds only Bob's notifications")
	}
	require.Len(t, f.list(t, bob, "", 100), 7)
}

func testRecipients(t *testing.T, f *fixture) {
	user := uuid.NewString()
	get := func() (domain.Recipient, bool) {
		var (
			r     domain.Recipient
			known bool
		)
		require.NoError(t, f.db.InTx(t.Context(), func(tx *sql.Tx) error {
			var err error
			r, known, err = f.repo.Recipient(t.Context(), tx, user)
			return err
		}))
		return r, known
	}
	remember := func(r domain.Recipient) {
		require.NoError(t, f.db.InTx(t.Context(), func(tx *sql.Tx) error {
			return f.repo.RememberRecipient(t.Context(), tx, r)
		}))
	}
	r, known := get()
	require.False(t, known)
	require.Equal(t, domain.Recipient{UserID: user}, r)

	remember(domain.Recipient{UserID: user, Email: "ada@example.com", Name: "Ada"})
	remember(domain.Recipient{UserID: user, Email: "ada@lovelace.example", Name: "Ada L."})
	r, known = get()
	require.True(t, known)
	require.Equal(t, domain.Recipient{UserID: user, Email: "ada@lovelace.example", Name: "Ada L."}, r)
}

func BenchmarkList(b *testing.B) {
	d := dbtest.Open(b, dbtest.SQLiteURL(b))
	require.NoError(b, notifications.MigrateDB(b.Context(), d))
	repo := adapters.NewNotificationSQLRepository(d)
	user := "bench-user"
	require.NoError(b, d.InTx(b.Context(), func(tx *sql.Tx) error {
		for i := range 1000 {
			n := newNotification(user)
			n.Subject = fmt.Sprint("notification ", i)
			if _, err := repo.Insert(b.Context(), tx, n); err != nil {
				return err
			}
		}
		return nil
	}))
	for b.Loop() {
		if _, err := repo.List(b.Context(), user, "", 20); err != nil {
			b.Fatal(err)
		}
	}
}

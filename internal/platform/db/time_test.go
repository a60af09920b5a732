package db_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
)

func TestFormatTime(t *testing.T) {
	berlin := time.FixedZone("CEST", 2*60*60)
	at := time.Date(2030, 3, 4, 7, 6, 7, 891011121, berlin)
	require.Equal(t, "2030-03-04T05:06:07.891011Z", db.FormatTime(at), "UTC, truncated to microseconds")
	require.Equal(t, "2030-03-04T05:06:07.000000Z", db.FormatTime(at.Truncate(time.Second)), "fixed width")
}

func TestTimeColumnsOnBothEngines(t *testing.T) {
	for _, engine := range dbtest.Engines(t) {
		t.Run(engine.Name, func(t *testing.T) {
			d := dbtest.Open(t, engine.URL)
			// The column types the services' migrations use per engine.
			columnType := "TEXT"
			if d.Dialect == db.Postgres {
				columnType = "TIMESTAMPTZ"
			}
			_, err := d.ExecContext(t.Context(),
				"CREATE TABLE events (id INTEGER PRIMARY KEY, at "+columnType+" NOT NULL, due "+columnType+")")
			require.NoError(t, err)

			// Chosen so that text without a fixed width and zone would sort
			// them wrongly: a whole second before a later fraction of it, and
			// a time given in a zone east of UTC.
			base := time.Date(2030, 3, 4, 5, 6, 7, 0, time.UTC)
			times := []time.Time{
				base.Add(250 * time.Millisecond),
				base.Add(500 * time.Millisecond),
				base.Add(time.Second),
				base.Add(time.Second + 123456789).In(time.FixedZone("", 9*60*60)),
				base.Add(time.Hour),
			}
			insert := func(id int, at time.Time, due any) {
				t.Helper()
				_, err := d.ExecContext(t.Context(), "INSERT INTO events (id, at, due) VALUES ($1, $2, $3)",
					id, db.FormatTime(at), due)
				require.NoError(t, err)
			}
			insert(5, times[4], nil)
			insert(3, times[2], nil)
			insert(2, times[1], db.FormatTime(times[4]))
			insert(4, times[3], nil)
			insert(1, times[0], nil)

			// Comparing and ordering in SQL follow time on both engines.
			rows, err := d.QueryContext(t.Context(),
				"SELECT id, at FROM events WHERE at > $1 ORDER BY at", db.FormatTime(times[0]))
			require.NoError(t, err)
			defer rows.Close()
			var (
				ids []int
				ats []time.Time
			)
			for rows.Next() {
				var (
					id int
					at time.Time
				)
				require.NoError(t, rows.Scan(&id, db.Time(&at)))
				ids, ats = append(ids, id), append(ats, at)
			}
			require.NoError(t, rows.Err())
			require.Equal(t, []int{2, 3, 4, 5}, ids)
			for i, at := range ats {
				want := times[i+1].UTC().Truncate(time.Microsecond)
				require.Equal(t, want, at, "read back in UTC at microsecond precision")
				require.Equal(t, time.UTC, at.Location())
			}

			// A nullable column: NULL reads as the zero time, even over a value.
			due := time.Now()
			require.NoError(t, d.QueryRowContext(t.Context(), "SELECT due FROM events WHERE id = 1").Scan(db.NullTime(&due)))
			require.True(t, due.IsZero())
			require.NoError(t, d.QueryRowContext(t.Context(), "SELECT due FROM events WHERE id = 2").Scan(db.NullTime(&due)))
			require.Equal(t, times[4], due)

			// NULL where a time is required is an error, not a zero time.
			var at time.Time
			err = d.QueryRowContext(t.Context(), "SELECT due FROM events WHERE id = 1").Scan(db.Time(&at))
			require.ErrorContains(t, err, "cannot scan <nil> into a time")
		})
	}
}

func TestTimeRejectsWhatIsNotATime(t *testing.T) {
	var at time.Time
	require.ErrorContains(t, db.Time(&at).Scan("yesterday"), `parse time "yesterday"`)
	require.ErrorContains(t, db.NullTime(&at).Scan(int64(42)), "cannot scan int64 into a time")
	require.NoError(t, db.Time(&at).Scan([]byte("2030-03-04T05:06:07.5+02:00")))
	require.Equal(t, time.Date(2030, 3, 4, 3, 6, 7, 500000000, time.UTC), at)
}

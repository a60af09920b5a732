// Package adapters implements what identity's app layer needs: one SQL
// repository per aggregate that runs unchanged on SQLite and PostgreSQL,
// and the argon2id password hasher.
package adapters

import (
	"database/sql"
	"time"
)

// dbTime is how every time goes into the database: UTC, at the microsecond
// precision PostgreSQL keeps. On SQLite times are stored as text, and UTC
// text of this shape sorts in time order, so comparisons in SQL hold on
// both engines.
func dbTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// fromNull reads a nullable time, NULL becoming the zero time.
func fromNull(t sql.NullTime) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time.UTC()
}

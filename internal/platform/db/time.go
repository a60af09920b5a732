package db

import (
	"database/sql"
	"fmt"
	"time"
)

// TimeLayout is the text form of a stored time: UTC, fixed width, with the
// microseconds PostgreSQL keeps. SQLite has no time type, so there times
// live in TEXT columns in this form, and because every value has the same
// width and zone, text order is time order: comparisons and ORDER BY in SQL
// mean the same on both engines. PostgreSQL parses it into TIMESTAMPTZ.
const TimeLayout = "2006-01-02T15:04:05.000000Z"

// FormatTime returns t as a query argument for a time column, in
// TimeLayout. Anything finer than a microsecond is truncated, so what is
// written reads back the same on both engines.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// Time returns a Scanner that reads a NOT NULL time column into *t, in UTC:
// a TIMESTAMPTZ from PostgreSQL, or its RFC 3339 text (as FormatTime writes
// it) from SQLite. A NULL is an error; use NullTime for a nullable column.
func Time(t *time.Time) sql.Scanner { return timeScanner{t: t} }

// NullTime is Time for a nullable column: a NULL sets *t to the zero time.
func NullTime(t *time.Time) sql.Scanner { return timeScanner{t: t, nullable: true} }

type timeScanner struct {
	t        *time.Time
	nullable bool
}

func (s timeScanner) Scan(src any) error {
	var text string
	switch v := src.(type) {
	case time.Time:
		*s.t = v.UTC()
		return nil
	case string:
		text = v
	case []byte:
		text = string(v)
	case nil:
		if s.nullable {
			*s.t = time.Time{}
			return nil
		}
		return fmt.Errorf("cannot scan %T into a time", src)
	default:
		return fmt.Errorf("cannot scan %T into a time", src)
	}
	t, err := time.Parse(time.RFC3339Nano, text)
	if err != nil {
		return fmt.Errorf("parse time %q: %w", text, err)
	}
	*s.t = t.UTC()
	return nil
}

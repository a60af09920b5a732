// Package domain holds the inventory's stock levels and reservations and
// the rules they obey: which inputs are valid and which status a
// reservation may move to from which. It does no I/O.
package domain

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Limits on inputs.
const (
	MaxSKULength     = 64
	MaxOrderIDLength = 64
	MaxOnHand        = 1_000_000
	MaxLines         = 50
	MaxQuantity      = 1000
	// MaxTTL is the longest a reservation may hold stock.
	MaxTTL = 24 * time.Hour
)

// Stock is one sku's stock level. Invariants (also enforced by the
// database): 0 ≤ Reserved ≤ OnHand and Sold ≥ 0.
type Stock struct {
	SKU string
	// OnHand counts the units physically available for sale, the reserved
	// ones included; committed units have left it.
	OnHand int32
	// Reserved counts the units held by live reservations.
	Reserved int32
	// Sold counts the units ever committed, net of restocks.
	Sold int32
}

// Available is what a new reservation may still hold.
func (s Stock) Available() int32 { return s.OnHand - s.Reserved }

// Status is where a reservation is in its life.
type Status string

// The statuses. Reserved is the only one that holds stock; Committed is the
// only one whose stock is sold; the others are final (Restocked after
// Committed, Released and Expired after Reserved).
const (
	StatusReserved  Status = "reserved"
	StatusCommitted Status = "committed"
	StatusReleased  Status = "released"
	StatusRestocked Status = "restocked"
	StatusExpired   Status = "expired"
)

// Line is a quantity of one sku.
type Line struct {
	SKU      string
	Quantity int32
}

// Reservation is the stock an order holds (or held, or bought).
type Reservation struct {
	OrderID string
	Status  Status
	// Lines are merged by sku and sorted by sku. A tombstone has none.
	Lines []Line
	// ExpiresAt is when a reserved reservation stops holding stock; zero
	// for a tombstone.
	ExpiresAt time.Time
}

// Tombstone reports whether r was recorded by a release that came before
// any reservation for its order: it holds nothing and never will.
func (r Reservation) Tombstone() bool { return len(r.Lines) == 0 }

// ExpiredAt reports whether r is reserved but past its expiry at now.
func (r Reservation) ExpiredAt(now time.Time) bool {
	return r.Status == StatusReserved && !now.Before(r.ExpiresAt)
}

// Move decides, as Transition does, what moving r to status to at now
// means, with time taken into account: a reservation past its expiry can
// no longer be committed (ErrReservationExpired: expire it), and one not yet
// past it is not due to expire (nothing to do).
func (r Reservation) Move(to Status, now time.Time) (apply bool, err error) {
	if r.Status == StatusReserved {
		switch {
		case to == StatusCommitted && r.ExpiredAt(now):
			return false, ErrReservationExpired
		case to == StatusExpired && !r.ExpiredAt(now):
			return false, nil
		}
	}
	return Transition(r.Status, to)
}

// SameLines reports whether lines (normalised by NormalizeLines) are what r
// holds.
func (r Reservation) SameLines(lines []Line) bool { return slices.Equal(r.Lines, lines) }

// NormalizeSKU trims s and checks it is 1 to 64 characters of letters,
// digits, '.', '_' and '-'. It returns it upper-cased, as the catalog
// stores skus, so "abc-1" and "ABC-1" are the same stock.
func NormalizeSKU(s string) (string, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return "", ErrSKURequired
	case len(s) > MaxSKULength:
		return "", ErrSKUTooLong
	}
	for i := 0; i < len(s); i++ {
		if !isSKUByte(s[i]) {
			return "", ErrSKUCharacters
		}
	}
	return strings.ToUpper(s), nil
}

func isSKUByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

// ValidateOrderID checks an order id: 1 to 64 characters of letters,
// digits, '.', '_', ':' and '-' (a UUID fits). It is taken as is, case
// included.
func ValidateOrderID(id string) error {
	switch {
	case id == "":
		return ErrOrderIDRequired
	case len(id) > MaxOrderIDLength:
		return ErrOrderIDTooLong
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !isSKUByte(c) && c != ':' {
			return ErrOrderIDCharacters
		}
	}
	return nil
}

// ValidateOnHand checks a stock level an admin sets.
func ValidateOnHand(n int32) error {
	if n < 0 || n > MaxOnHand {
		return ErrOnHandRange
	}
	return nil
}

// NormalizeLines validates lines (1 to 50, each quantity 1 to 1000) and
// merges them by normalised sku, sorted by sku: the order in which stock
// rows are locked, so concurrent reservations cannot deadlock. A merged
// quantity above 1000 is ErrQuantityRange too.
func NormalizeLines(lines []Line) ([]Line, error) {
	switch {
	case len(lines) == 0:
		return nil, ErrNoLines
	case len(lines) > MaxLines:
		return nil, ErrTooManyLines
	}
	merged := make(map[string]int32, len(lines))
	for _, l := range lines {
		sku, err := NormalizeSKU(l.SKU)
		if err != nil {
			return nil, err
		}
		if l.Quantity < 1 || l.Quantity > MaxQuantity {
			return nil, ErrQuantityRange
		}
		merged[sku] += l.Quantity
		if merged[sku] > MaxQuantity {
			return nil, ErrQuantityRange
		}
	}
	out := make([]Line, 0, len(merged))
	for sku, q := range merged {
		out = append(out, Line{SKU: sku, Quantity: q})
	}
	slices.SortFunc(out, func(a, b Line) int { return strings.Compare(a.SKU, b.SKU) })
	return out, nil
}

// ValidateTTL checks a requested hold time; 0 means the service default.
func ValidateTTL(ttl time.Duration) error {
	if ttl < 0 || ttl > MaxTTL {
		return ErrTTLRange
	}
	return nil
}

// Transition decides what moving a reservation now in status from to
// status to means: apply is true when the move must be made (and stock
// adjusted); apply false with a nil error means the reservation is already
// where the caller wants it (a retry: nothing to do); an error means the
// move is not allowed.
//
//	to committed: reserved → apply; committed → done; released, expired,
//	              restocked → conflict
//	to released:  reserved → apply; released, expired → done;
//	              committed, restocked → conflict (restock instead)
//	to restocked: committed → apply; restocked → done; others → conflict
//	to expired:   reserved → apply; anything else → done (left alone)
func Transition(from, to Status) (apply bool, err error) {
	if from == to {
		return false, nil
	}
	switch to {
	case StatusCommitted:
		switch from {
		case StatusReserved:
			return true, nil
		case StatusReleased:
			return false, ErrReservationReleased
		case StatusExpired:
			return false, ErrReservationExpired
		case StatusRestocked:
			return false, ErrReservationRestocked
		}
	case StatusReleased:
		switch from {
		case StatusReserved:
			return true, nil
		case StatusExpired:
			return false, nil
		case StatusCommitted:
			return false, ErrReservationCommitted
		case StatusRestocked:
			return false, ErrReservationRestocked
		}
	case StatusRestocked:
		if from == StatusCommitted {
			return true, nil
		}
		return false, ErrNotCommitted
	case StatusExpired:
		return from == StatusReserved, nil
	}
	// Unreachable with the statuses above; unkinded, so masked as internal.
	return false, fmt.Errorf("no transition from %q to %q", from, to)
}

// Delta is a change to one sku's stock row.
type Delta struct{ OnHand, Reserved, Sold int32 }

// EffectOf is what moving a line of quantity q into status to does to its
// sku's stock: reserving holds it, committing turns held units into sold
// ones, releasing or expiring frees them, restocking puts sold units back
// on hand. on_hand + sold only changes through SetStock.
func EffectOf(to Status, q int32) Delta {
	switch to {
	case StatusReserved:
		return Delta{Reserved: q}
	case StatusCommitted:
		return Delta{OnHand: -q, Reserved: -q, Sold: q}
	case StatusReleased, StatusExpired:
		return Delta{Reserved: -q}
	case StatusRestocked:
		return Delta{OnHand: q, Sold: -q}
	}
	return Delta{}
}

// Movement is one entry of the stock ledger.
type Movement struct {
	SKU string
	// OrderID is empty for an admin's SetStock.
	OrderID string
	Kind    string
	Delta   Delta
	At      time.Time
}

// Movement kinds, the ledger's record of why a stock row changed.
const (
	MovementReserve = "reserve"
	MovementCommit  = "commit"
	MovementRelease = "release"
	MovementExpire  = "expire"
	MovementRestock = "restock"
	MovementSet     = "set"
)

// MovementKind names the ledger entry written when a reservation enters
// status to.
func MovementKind(to Status) string {
	switch to {
	case StatusReserved:
		return MovementReserve
	case StatusCommitted:
		return MovementCommit
	case StatusReleased:
		return MovementRelease
	case StatusExpired:
		return MovementExpire
	case StatusRestocked:
		return MovementRestock
	}
	return string(to)
}

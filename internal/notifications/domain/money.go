package domain

import (
	"strconv"
	"strings"
)

// currencyFormats says how amounts in a currency are written for a reader:
// the symbol that goes before the amount ("" writes the code after it) and
// how many minor units make one major unit.
var currencyFormats = map[string]struct {
	symbol   string
	decimals int
}{
	"USD": {"$", 2},
	"EUR": {"€", 2},
	"GBP": {"£", 2},
	"JPY": {"¥", 0},
	"AUD": {"A$", 2},
	"CAD": {"CA$", 2},
	"CHF": {"", 2},
	"DKK": {"", 2},
	"NOK": {"", 2},
	"PLN": {"", 2},
	"SEK": {"", 2},
}

// FormatMoney writes an amount in minor units as a person reads it:
// "$1,234.50", "€12.00", "¥1,250", "12.50 CHF". An unknown currency is
// written with two decimals and its code.
func FormatMoney(cents int64, currency string) string {
	currency = strings.ToUpper(strings.TrimSpace(currency))
	f, known := currencyFormats[currency]
	if !known {
		f.decimals = 2
	}
	sign := ""
	if cents < 0 {
		sign = "-"
		cents = -cents
	}
	amount := groupThousands(cents)
	if f.decimals > 0 {
		unit := int64(1)
		for range f.decimals {
			unit *= 10
		}
		minor := strconv.FormatInt(cents%unit, 10)
		amount = groupThousands(cents/unit) + "." + strings.Repeat("0", f.decimals-len(minor)) + minor
	}
	switch {
	case f.symbol != "":
		return sign + f.symbol + amount
	case currency != "":
		return sign + amount + " " + currency
	default:
		return sign + amount
	}
}

// groupThousands writes n (not negative) with a comma every three digits.
func groupThousands(n int64) string {
	digits := strconv.FormatInt(n, 10)
	if len(digits) <= 3 {
		return digits
	}
	var b strings.Builder
	lead := len(digits) % 3
	if lead > 0 {
		b.WriteString(digits[:lead])
	}
	for i := lead; i < len(digits); i += 3 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(digits[i : i+3])
	}
	return b.String()
}

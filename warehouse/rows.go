package warehouse

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// The logical columns, as indexes into record.
const (
	colUser = iota
	colMethod
	colTimestamp
	colTeam
	colClient
	colUserMinutes
	colActiveUserMinutes
	numCols
)

func (c Columns) names() [numCols]string {
	return [numCols]string{c.User, c.Method, c.Timestamp, c.Team, c.Client, c.UserMinutes, c.ActiveUserMinutes}
}

// Reasons a row is bad; the keys of Rows.SkippedBy.
const (
	ReasonMissing   = "missing value"
	ReasonTimestamp = "bad timestamp"
	ReasonNegative  = "negative count"
	ReasonCount     = "bad count"
	ReasonMalformed = "malformed row"
	// ReasonTooLong is a line, row or value over a reading limit
	// (Options.MaxLineBytes, MaxFieldBytes). A value too long is a bad
	// row; a line or row too long stops the run.
	ReasonTooLong = "too long"
)

// RowError is a bad row: where it is and what is wrong with it.
type RowError struct {
	Object string // file path or s3:// URL of the part
	Row    int64  // 1-based data row in the part (0: the header)
	Line   int64  // 1-based line, when the format has lines (0 otherwise)
	Column string // the column's name in the export ("" for the whole row)
	Reason string // one of the Reason constants
	Msg    string
}

func (e *RowError) Error() string {
	var b strings.Builder
	b.WriteString(e.Object)
	if e.Row == 0 {
		b.WriteString(": the header")
	} else {
		fmt.Fprintf(&b, ": row %d", e.Row)
	}
	if e.Line > 0 && e.Line != e.Row {
		fmt.Fprintf(&b, " (line %d)", e.Line)
	}
	if e.Column != "" {
		fmt.Fprintf(&b, ", column %q", e.Column)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap makes a row over a reading limit match ErrLimit.
func (e *RowError) Unwrap() error {
	if e.Reason == ReasonTooLong {
		return ErrLimit
	}
	return nil
}

// record is one row as read, before parsing: a value per logical column.
// Strings may alias a reused buffer: valid only until the next row.
type record struct {
	vals [numCols]string
	has  [numCols]bool
	// tsNanos, when tsTyped, is a timestamp already typed by the format
	// (Parquet TIMESTAMP / INT96), in Unix nanoseconds.
	tsNanos int64
	tsTyped bool
}

func (r *record) reset() { *r = record{} }

// row is a parsed record.
type row struct {
	user, method, team, client string
	sec                        int64 // Unix seconds (raw shape)
	ms                         int64 // Unix milliseconds (raw shape)
	userMinutes, activeMinutes int64 // aggregated shape
}

// rowParser turns records into rows for one shape and column mapping.
type rowParser struct {
	shape Shape
	names [numCols]string
	unit  TimeUnit
}

// parse checks and converts one record. The returned RowError has Column
// and Reason set; the caller adds the object and row.
func (p *rowParser) parse(rec *record, out *row) *RowError {
	need := func(c int) (string, *RowError) {
		v := rec.vals[c]
		if !rec.has[c] || strings.TrimSpace(v) == "" {
			return "", &RowError{Column: p.names[c], Reason: ReasonMissing, Msg: "no value"}
		}
		return v, nil
	}
	var err *RowError
	if out.method, err = need(colMethod); err != nil {
		return err
	}
	out.team, out.client = rec.vals[colTeam], rec.vals[colClient]
	if p.shape == ShapeAggregated {
		for _, c := range []int{colUserMinutes, colActiveUserMinutes} {
			v, err := need(c)
			if err != nil {
				return err
			}
			n, perr := parseCount(v)
			if perr != nil {
				perr.Column = p.names[c]
				return perr
			}
			if c == colUserMinutes {
				out.userMinutes = n
			} else {
				out.activeMinutes = n
			}
		}
		if out.userMinutes > out.activeMinutes {
			return &RowError{Column: p.names[colUserMinutes], Reason: ReasonCount,
				Msg: fmt.Sprintf("%d user-minutes is more than the %d active user-minutes (%q)", out.userMinutes, out.activeMinutes, p.names[colActiveUserMinutes])}
		}
		return nil
	}
	if out.user, err = need(colUser); err != nil {
		return err
	}
	if rec.tsTyped {
		out.sec = floorDiv(rec.tsNanos, 1e9)
		out.ms = floorDiv(rec.tsNanos, 1e6)
		return nil
	}
	v, err := need(colTimestamp)
	if err != nil {
		return err
	}
	ms, ok := parseTimestampMS(v, p.unit)
	if !ok {
		return &RowError{Column: p.names[colTimestamp], Reason: ReasonTimestamp,
			Msg: fmt.Sprintf("cannot read %s as a time (want RFC 3339, \"2006-01-02 15:04:05\" in UTC, or epoch seconds/ms)", clip(v))}
	}
	out.sec, out.ms = floorDiv(ms, 1000), ms
	return nil
}

// parseCount reads a non-negative integer count ("12", "12.0", " 12 ").
func parseCount(v string) (int64, *RowError) {
	s := strings.TrimSpace(v)
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || f != math.Trunc(f) || math.IsInf(f, 0) || math.Abs(f) > 1<<62 {
			return 0, &RowError{Reason: ReasonCount, Msg: fmt.Sprintf("%s is not a whole number", clip(v))}
		}
		n = int64(f)
	}
	if n < 0 {
		return 0, &RowError{Reason: ReasonNegative, Msg: fmt.Sprintf("%d is negative: a count of user-minutes cannot be", n)}
	}
	return n, nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// Timestamps are accepted from 1970 to 2200: anything else is a unit or a
// column mix-up, and the bound keeps minutes in 32 bits.
const (
	minSec = 0
	maxSec = 7258118400 // 2200-01-01T00:00:00Z
)

// parseTimestamp reads RFC 3339 (with 'T' or a space, optional fraction,
// zone Z or ±hh[:]mm, none meaning UTC) or an epoch number, to Unix seconds.
func parseTimestamp(s string, unit TimeUnit) (int64, bool) {
	ms, ok := parseTimestampMS(s, unit)
	return floorDiv(ms, 1000), ok
}

// parseTimestampMS is parseTimestamp to Unix milliseconds (a fraction
// beyond them is dropped, rounding down).
func parseTimestampMS(s string, unit TimeUnit) (int64, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, false
	}
	var ms int64
	var ok bool
	if c := s[0]; (c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.') && !looksLikeDate(s) {
		ms, ok = parseEpoch(s, unit)
	} else {
		ms, ok = parseDateTime(s)
	}
	if sec := floorDiv(ms, 1000); !ok || sec < minSec || sec >= maxSec {
		return 0, false
	}
	return ms, true
}

func looksLikeDate(s string) bool { return len(s) >= 10 && s[4] == '-' && s[7] == '-' }

func parseEpoch(s string, unit TimeUnit) (int64, bool) {
	intPart, frac := s, ""
	if i := strings.IndexByte(s, '.'); i >= 0 {
		intPart, frac = s[:i], s[i+1:]
		for _, c := range frac {
			if c < '0' || c > '9' {
				return 0, false
			}
		}
	}
	if strings.ContainsAny(intPart, "eE") {
		return 0, false
	}
	if intPart == "" || intPart == "-" || intPart == "+" {
		intPart += "0"
	}
	n, err := strconv.ParseInt(intPart, 10, 64)
	if err != nil {
		return 0, false
	}
	neg := strings.HasPrefix(intPart, "-")
	div := int64(1)
	switch unit {
	case UnitSecond:
	case UnitMilli:
		div = 1e3
	case UnitMicro:
		div = 1e6
	case UnitNano:
		div = 1e9
	default:
		a := n
		if a < 0 {
			a = -a
		}
		switch {
		case a < 1e11:
		case a < 1e14:
			div = 1e3
		case a < 1e17:
			div = 1e6
		default:
			div = 1e9
		}
	}
	if div == 1 {
		// Seconds: the fraction's first three digits are milliseconds.
		if n > math.MaxInt64/1000 || n < math.MinInt64/1000 {
			return 0, false
		}
		f := int64(0)
		for i := 0; i < 3; i++ {
			f *= 10
			if i < len(frac) {
				f += int64(frac[i] - '0')
			}
		}
		if neg {
			if f == 0 && strings.Trim(frac, "0") != "" {
				f = 1 // below a millisecond: still before the second
			}
			return n*1000 - f, true
		}
		return n*1000 + f, true
	}
	// Milliseconds and finer: the integer part, floored.
	return floorDiv(n, div/1000), true
}

// parseDateTime reads YYYY-MM-DD[T ]hh:mm[:ss[.f…]][Z|±hh[:mm]| UTC], to
// Unix milliseconds.
func parseDateTime(s string) (int64, bool) {
	num := func(s string) (int, bool) {
		n := 0
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, len(s) > 0
	}
	if len(s) < 16 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || s[13] != ':' {
		return 0, false
	}
	y, ok1 := num(s[0:4])
	mo, ok2 := num(s[5:7])
	d, ok3 := num(s[8:10])
	h, ok4 := num(s[11:13])
	mi, ok5 := num(s[14:16])
	if !(ok1 && ok2 && ok3 && ok4 && ok5) {
		return 0, false
	}
	sec, milli := 0, 0
	rest := s[16:]
	if len(rest) >= 3 && rest[0] == ':' {
		var ok bool
		if sec, ok = num(rest[1:3]); !ok {
			return 0, false
		}
		rest = rest[3:]
		if len(rest) > 0 && (rest[0] == '.' || rest[0] == ',') {
			i := 1
			for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
				i++
			}
			if i == 1 {
				return 0, false
			}
			for j := 1; j < 4; j++ {
				milli *= 10
				if j < i {
					milli += int(rest[j] - '0')
				}
			}
			rest = rest[i:]
		}
	}
	if mo < 1 || mo > 12 || d < 1 || d > daysIn(y, mo) || h > 23 || mi > 59 || sec > 60 {
		return 0, false
	}
	off := 0
	rest = strings.TrimPrefix(rest, " ")
	switch {
	case rest == "" || rest == "Z" || rest == "z" || rest == "UTC" || rest == "+00" || rest == "+0000":
	case rest[0] == '+' || rest[0] == '-':
		z := rest[1:]
		if len(z) == 5 && z[2] == ':' {
			z = z[:2] + z[3:]
		}
		if len(z) == 2 {
			z += "00"
		}
		if len(z) != 4 {
			return 0, false
		}
		zh, ok1 := num(z[:2])
		zm, ok2 := num(z[2:])
		if !ok1 || !ok2 || zh > 23 || zm > 59 {
			return 0, false
		}
		off = zh*3600 + zm*60
		if rest[0] == '-' {
			off = -off
		}
	default:
		return 0, false
	}
	days := daysFromCivil(y, mo, d)
	return (days*86400+int64(h*3600+mi*60+sec)-int64(off))*1000 + int64(milli), true
}

func daysIn(y, m int) int {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil is days since 1970-01-01 (H. Hinnant's algorithm).
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era = (y - 399) / 400
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}

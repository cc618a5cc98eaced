package behaviors

import "fmt"

// Limits the shape scan enforces before any parser runs.
const (
	// MaxDepth is the deepest JSON nesting accepted in a behavior or
	// formation file (objects and arrays together).
	MaxDepth = 64
	// MaxValues is the most JSON values (scalars, keys, objects and arrays)
	// one file may hold: enough for any realistic 16 MiB behavior set
	// (about one value per 8 bytes), while bounding the parse tree.
	MaxValues = 2 << 20
	// MaxLiteral is the longest number or keyword literal accepted, in
	// bytes: no frequency or duration needs more, and a megabyte of digits
	// would only cost the number parsers time.
	MaxLiteral = 100
)

// ShapeError is input refused by the shape scan: too deep, too many values,
// a literal too long, an unterminated string or comment. Off is the byte
// offset the problem starts at.
type ShapeError struct {
	Off int
	Msg string
}

func (e *ShapeError) Error() string { return fmt.Sprintf("byte %d: %s", e.Off, e.Msg) }

// CheckJSONShape scans a JSON or HuJSON document once, in linear time and
// constant stack, and reports the first place where it is nested deeper
// than maxDepth, holds more than maxValues values, or has a literal longer
// than MaxLiteral bytes. It does not validate the syntax beyond what it
// needs to count: callers run a parser afterwards, which now cannot be
// driven into deep recursion. Request bodies can be checked with it before
// encoding/json sees them.
func CheckJSONShape(data []byte, maxDepth, maxValues int) error {
	_, err := standardize(data, maxDepth, maxValues)
	return err
}

// standardize turns HuJSON (JSON with // and /* */ comments and trailing
// commas) into standard JSON by blanking comments and trailing commas with
// spaces, so every byte offset stays where it was, and enforces the shape
// limits on the way. It is one forward pass with no recursion; data is
// copied only when something has to be blanked.
func standardize(data []byte, maxDepth, maxValues int) ([]byte, error) {
	out := data
	copied := false
	blank := func(from, to int) {
		if !copied {
			out = append([]byte(nil), data...)
			copied = true
		}
		for i := from; i < to; i++ {
			if out[i] != '\n' {
				out[i] = ' '
			}
		}
	}
	const (
		sigStart = iota
		sigOpen  // after [ or {
		sigColon // after :
		sigComma // after ,
		sigValue // after a complete value (or a key)
	)
	sig := sigStart
	commaAfterValue := false
	comma := -1
	depth, values := 0, 0
	n := len(data)
	for i := 0; i < n; {
		c := data[i]
		switch c {
		case ' ', '\t', '\r', '\n':
			i++
			continue
		case '/':
			switch {
			case i+1 < n && data[i+1] == '/':
				j := i + 2
				for j < n && data[j] != '\n' {
					j++
				}
				blank(i, j)
				i = j
			case i+1 < n && data[i+1] == '*':
				j := i + 2
				for j+1 < n && !(data[j] == '*' && data[j+1] == '/') {
					j++
				}
				if j+1 >= n {
					return nil, &ShapeError{Off: i, Msg: "unterminated /* comment"}
				}
				blank(i, j+2)
				i = j + 2
			default:
				return nil, &ShapeError{Off: i, Msg: "invalid character '/' (comments start with // or /*)"}
			}
			continue
		case '"':
			j := i + 1
			for j < n && data[j] != '"' {
				if data[j] == '\\' {
					j++
				}
				j++
			}
			if j >= n {
				return nil, &ShapeError{Off: i, Msg: "unterminated string"}
			}
			values++
			sig = sigValue
			i = j + 1
		case '[', '{':
			depth++
			if depth > maxDepth {
				return nil, &ShapeError{Off: i, Msg: fmt.Sprintf("nested deeper than %d levels", maxDepth)}
			}
			values++
			sig = sigOpen
			i++
		case ']', '}':
			if sig == sigComma && commaAfterValue {
				blank(comma, comma+1) // a trailing comma
			}
			if depth > 0 {
				depth--
			}
			sig = sigValue
			i++
		case ',':
			commaAfterValue = sig == sigValue
			comma = i
			sig = sigComma
			i++
		case ':':
			sig = sigColon
			i++
		default:
			j := i
			for j < n && !isJSONDelim(data[j]) {
				j++
			}
			if j-i > MaxLiteral {
				return nil, &ShapeError{Off: i, Msg: fmt.Sprintf("a literal of %d bytes (numbers and keywords have at most %d)", j-i, MaxLiteral)}
			}
			values++
			sig = sigValue
			i = j
		}
		if values > maxValues {
			return nil, &ShapeError{Off: i - 1, Msg: fmt.Sprintf("more than %d JSON values", maxValues)}
		}
	}
	return out, nil
}

func isJSONDelim(c byte) bool {
	switch c {
	case ' ', '\t', '\r', '\n', ',', ':', '[', ']', '{', '}', '"', '/':
		return true
	}
	return false
}

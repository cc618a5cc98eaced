package behaviors

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// maxScanDepth is the deepest nesting ScanTopLevel accepts: the same as
// encoding/json's decoder, so a reply is refused by one exactly when it is
// refused by the other.
const maxScanDepth = 10000

// ScanTopLevel checks that data starts with one well-formed JSON value and,
// when that value is an object, calls member with each top-level member's
// key (unquoted; it may alias data, do not keep it) and raw value bytes, in order (a repeated key is reported
// each time: the last one is what a decoder keeps). It builds no tree and
// allocates nothing for ordinary keys: it is how a koi learns a reply's
// outcome (`ok`, `error`) or a frame's type without decoding what nothing
// reads. Like encoding/json's Decoder, it reads the first value and ignores
// what follows it. It returns the offset just past the value.
//
// It is one forward pass with an explicit stack (no recursion), so input
// nesting cannot grow the goroutine's stack.
func ScanTopLevel(data []byte, member func(key, val []byte)) (int, error) {
	var stackBuf [32]byte
	stack := stackBuf[:0]
	n := len(data)
	ws := func(i int) int {
		for i < n && isSpace(data[i]) {
			i++
		}
		return i
	}
	var key []byte
	valStart := 0
	// readKey reads `"key" :` at i (after whitespace) and returns the
	// offset after the colon.
	readKey := func(i int) (int, error) {
		i = ws(i)
		if i >= n || data[i] != '"' {
			return i, &ShapeError{Off: i, Msg: "expected an object key"}
		}
		end, esc, err := scanString(data, i)
		if err != nil {
			return end, err
		}
		if len(stack) == 1 && member != nil {
			key = unquoteKey(data[i:end], esc)
		}
		i = ws(end)
		if i >= n || data[i] != ':' {
			return i, &ShapeError{Off: i, Msg: "expected ':' after an object key"}
		}
		return i + 1, nil
	}
	i := 0
	var err error
	inValue := true
	for {
		if inValue {
			i = ws(i)
			if i >= n {
				return i, &ShapeError{Off: i, Msg: "unexpected end of JSON"}
			}
			if len(stack) == 1 && stack[0] == '{' {
				valStart = i
			}
			switch c := data[i]; {
			case c == '{' || c == '[':
				if len(stack) >= maxScanDepth {
					return i, &ShapeError{Off: i, Msg: fmt.Sprintf("nested deeper than %d", maxScanDepth)}
				}
				stack = append(stack, c)
				i = ws(i + 1)
				if i < n && (data[i] == '}' && c == '{' || data[i] == ']' && c == '[') {
					stack = stack[:len(stack)-1]
					i++
					inValue = false
					continue
				}
				if c == '{' {
					if i, err = readKey(i); err != nil {
						return i, err
					}
				}
				continue
			case c == '"':
				if i, _, err = scanString(data, i); err != nil {
					return i, err
				}
			case c == 't':
				if i, err = literal(data, i, "true"); err != nil {
					return i, err
				}
			case c == 'f':
				if i, err = literal(data, i, "false"); err != nil {
					return i, err
				}
			case c == 'n':
				if i, err = literal(data, i, "null"); err != nil {
					return i, err
				}
			case c == '-' || c >= '0' && c <= '9':
				if i, err = scanNumber(data, i); err != nil {
					return i, err
				}
			default:
				return i, &ShapeError{Off: i, Msg: "invalid character " + quoteChar(c) + " looking for a value"}
			}
			inValue = false
			continue
		}
		// A value just ended.
		if len(stack) == 0 {
			return i, nil
		}
		top := stack[len(stack)-1]
		if len(stack) == 1 && top == '{' && member != nil {
			member(key, data[valStart:i])
		}
		i = ws(i)
		if i >= n {
			return i, &ShapeError{Off: i, Msg: "unexpected end of JSON"}
		}
		switch c := data[i]; {
		case c == ',':
			i++
			if top == '{' {
				if i, err = readKey(i); err != nil {
					return i, err
				}
			}
			inValue = true
		case c == '}' && top == '{', c == ']' && top == '[':
			stack = stack[:len(stack)-1]
			i++
		default:
			return i, &ShapeError{Off: i, Msg: "invalid character " + quoteChar(c) + " after a value"}
		}
	}
}

// plainStringByte marks the bytes a JSON string holds as they are: not a
// quote, a backslash or a control character.
var plainStringByte = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// skipPlain returns the offset of the first byte at or after i that is
// not plainStringByte (or len(data)): most of a string, in a tight loop.
// (Eight bytes at a time with word tests measured no faster on pond's
// replies, whose strings are short.)
func skipPlain(data []byte, i int) int {
	for i < len(data) && plainStringByte[data[i]] {
		i++
	}
	return i
}

// scanString reads the string starting at the quote at i and returns the
// offset after its closing quote and whether it holds escapes.
func scanString(data []byte, i int) (int, bool, error) {
	start := i
	esc := false
	for i++; i < len(data); i++ {
		i = skipPlain(data, i)
		if i >= len(data) {
			break
		}
		switch c := data[i]; {
		case c == '"':
			return i + 1, esc, nil
		case c == '\\':
			esc = true
			i++
			if i >= len(data) {
				break
			}
			switch data[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(data) || !isHex(data[i+1]) || !isHex(data[i+2]) || !isHex(data[i+3]) || !isHex(data[i+4]) {
					return i, esc, &ShapeError{Off: i, Msg: "invalid \\u escape in a string"}
				}
				i += 4
			default:
				return i, esc, &ShapeError{Off: i, Msg: "invalid escape " + quoteChar(data[i]) + " in a string"}
			}
		case c < 0x20:
			return i, esc, &ShapeError{Off: i, Msg: "control character " + quoteChar(c) + " in a string"}
		}
	}
	return i, esc, &ShapeError{Off: start, Msg: "unterminated string"}
}

// unquoteKey returns the text of a quoted key (raw includes the quotes) as
// a decoder gives it: escapes resolved, invalid UTF-8 replaced. An
// ordinary key is a slice of raw, not a copy.
func unquoteKey(raw []byte, esc bool) []byte {
	if !esc && utf8.Valid(raw) {
		return raw[1 : len(raw)-1]
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil
	}
	return []byte(s)
}

func literal(data []byte, i int, word string) (int, error) {
	if len(data)-i < len(word) || string(data[i:i+len(word)]) != word {
		return i, &ShapeError{Off: i, Msg: fmt.Sprintf("invalid literal (expected %s)", word)}
	}
	return i + len(word), nil
}

// scanNumber reads a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func scanNumber(data []byte, i int) (int, error) {
	start := i
	n := len(data)
	digits := func() bool {
		j := i
		for i < n && data[i] >= '0' && data[i] <= '9' {
			i++
		}
		return i > j
	}
	bad := func() (int, error) { return i, &ShapeError{Off: start, Msg: "invalid number"} }
	if data[i] == '-' {
		i++
	}
	switch {
	case i < n && data[i] == '0':
		i++
	case !digits():
		return bad()
	}
	if i < n && data[i] == '.' {
		i++
		if !digits() {
			return bad()
		}
	}
	if i < n && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < n && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if !digits() {
			return bad()
		}
	}
	return i, nil
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

package behaviors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits on input files, so that a hostile or broken file cannot exhaust
// memory or the stack.
const (
	// MaxFileSize is the largest behavior or formation file accepted.
	MaxFileSize = 16 << 20
)

type jkind uint8

const (
	jNull jkind = iota
	jBool
	jNumber
	jString
	jArray
	jObject
)

func (k jkind) String() string {
	return [...]string{"null", "a boolean", "a number", "a string", "an array", "an object"}[k]
}

// jnode is a JSON value that remembers where in the file it starts, so that
// every error can name a line and column.
//
// It is kept small (80 bytes) because a file may hold MaxValues of them.
type jnode struct {
	kind jkind
	b    bool
	off  int
	str  string   // a string's value or a number's text
	kids []*jnode // array elements, or object values parallel to keys
	keys []jkey   // object keys, in file order
}

// jkey is an object key and where it is written.
type jkey struct {
	name string
	off  int
}

// num returns a number node's text.
func (n *jnode) num() json.Number { return json.Number(n.str) }

// parseFile turns a JSON or HuJSON (comments, trailing commas) document into
// a position-aware tree. Offsets refer to the original bytes: standardize
// blanks comments and trailing commas in place.
func parseFile(data []byte) (*jnode, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("file is %d bytes, larger than the %d byte limit", len(data), MaxFileSize)
	}
	// The shape scan runs first: after it the recursive descent below is
	// at most MaxDepth deep and builds at most MaxValues nodes.
	std, err := standardize(data, MaxDepth, MaxValues)
	if err != nil {
		var se *ShapeError
		if errors.As(err, &se) {
			return nil, &posError{off: se.Off, msg: se.Msg}
		}
		return nil, err
	}
	p := &jparser{data: std}
	n, err := p.value(0)
	if err != nil {
		return nil, err
	}
	if p.ws(); p.i < len(p.data) {
		return nil, &posError{off: p.i, msg: "unexpected data after the top-level value"}
	}
	return n, nil
}

// posError is a parse error at a byte offset.
type posError struct {
	off int
	msg string
}

func (e *posError) Error() string { return e.msg }

// jparser is a recursive-descent parser of standard JSON (RFC 8259) that
// records where every value starts. It runs after the shape scan, so its
// recursion is at most MaxDepth deep. It reads the bytes directly:
// encoding/json's token stream built an error value for every string it
// read, which was a third of a large file's validation time.
type jparser struct {
	data []byte
	i    int
}

func (p *jparser) ws() {
	for p.i < len(p.data) {
		switch p.data[p.i] {
		case ' ', '\t', '\r', '\n':
			p.i++
		default:
			return
		}
	}
}

// unexpected reports the byte at p.i (or the end) as encoding/json would.
func (p *jparser) unexpected(context string) error {
	if p.i >= len(p.data) {
		return &posError{off: len(p.data), msg: "unexpected end of file"}
	}
	return &posError{off: p.i, msg: fmt.Sprintf("invalid character %s %s", quoteChar(p.data[p.i]), context)}
}

func quoteChar(c byte) string {
	switch c {
	case '\'':
		return `'\''`
	case '"':
		return `'"'`
	}
	q := strconv.Quote(string(rune(c)))
	return "'" + q[1:len(q)-1] + "'"
}

func (p *jparser) value(depth int) (*jnode, error) {
	p.ws()
	if depth > MaxDepth {
		return nil, &posError{off: p.i, msg: fmt.Sprintf("nested deeper than %d levels", MaxDepth)}
	}
	if p.i >= len(p.data) {
		return nil, p.unexpected("")
	}
	n := &jnode{off: p.i}
	switch c := p.data[p.i]; {
	case c == '"':
		s, err := p.str()
		if err != nil {
			return nil, err
		}
		n.kind, n.str = jString, s
	case c == '-' || (c >= '0' && c <= '9'):
		num, err := p.number()
		if err != nil {
			return nil, err
		}
		n.kind, n.str = jNumber, num
	case c == 't' || c == 'f' || c == 'n':
		for _, lit := range [...]string{"true", "false", "null"} {
			if bytes.HasPrefix(p.data[p.i:], []byte(lit)) {
				p.i += len(lit)
				n.kind, n.b = jBool, lit == "true"
				if lit == "null" {
					n.kind = jNull
				}
				return n, nil
			}
		}
		return nil, p.literalError()
	case c == '[':
		n.kind = jArray
		p.i++
		if p.ws(); p.i < len(p.data) && p.data[p.i] == ']' {
			p.i++
			return n, nil
		}
		for {
			e, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			n.kids = append(n.kids, e)
			p.ws()
			if p.i < len(p.data) && p.data[p.i] == ',' {
				p.i++
				continue
			}
			if p.i < len(p.data) && p.data[p.i] == ']' {
				p.i++
				return n, nil
			}
			return nil, p.unexpected("after array element")
		}
	case c == '{':
		n.kind = jObject
		p.i++
		if p.ws(); p.i < len(p.data) && p.data[p.i] == '}' {
			p.i++
			return n, nil
		}
		var seen map[string]bool
		for {
			if p.ws(); p.i >= len(p.data) || p.data[p.i] != '"' {
				return nil, p.unexpected("looking for beginning of object key string")
			}
			koff := p.i
			key, err := p.str()
			if err != nil {
				return nil, err
			}
			if seen == nil {
				seen = make(map[string]bool, 4)
			}
			if seen[key] {
				return nil, &posError{off: koff, msg: fmt.Sprintf("duplicate key %s", quote(key))}
			}
			seen[key] = true
			if p.ws(); p.i >= len(p.data) || p.data[p.i] != ':' {
				return nil, p.unexpected("after object key")
			}
			p.i++
			v, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			n.keys = append(n.keys, jkey{name: key, off: koff})
			n.kids = append(n.kids, v)
			p.ws()
			if p.i < len(p.data) && p.data[p.i] == ',' {
				p.i++
				continue
			}
			if p.i < len(p.data) && p.data[p.i] == '}' {
				p.i++
				return n, nil
			}
			return nil, p.unexpected("after object key:value pair")
		}
	default:
		return nil, p.unexpected("looking for beginning of value")
	}
	return n, nil
}

// literalError points at the first byte of a bad true/false/null.
func (p *jparser) literalError() error {
	for _, lit := range [...]string{"true", "false", "null"} {
		if p.data[p.i] != lit[0] {
			continue
		}
		for j := 1; j < len(lit); j++ {
			if p.i+j >= len(p.data) {
				p.i += j
				return p.unexpected("")
			}
			if p.data[p.i+j] != lit[j] {
				p.i += j
				return p.unexpected("in literal " + lit + " (expecting " + quoteChar(lit[j]) + ")")
			}
		}
	}
	return p.unexpected("looking for beginning of value")
}

// str reads a string literal at p.i. Strings without escapes and with
// valid UTF-8 (nearly all) are sliced directly; the others are decoded by
// encoding/json, so escapes, surrogates and invalid bytes come out exactly
// as the standard library has them.
func (p *jparser) str() (string, error) {
	start := p.i
	j := start + 1
	plain := true
	for ; j < len(p.data); j++ {
		c := p.data[j]
		if c == '"' {
			break
		}
		if c < 0x20 {
			p.i = j
			return "", p.unexpected("in string literal")
		}
		if c == '\\' {
			plain = false
			j++
			if j < len(p.data) && p.data[j] == 'u' {
				for k := 1; k <= 4; k++ {
					if j+k >= len(p.data) || !isHex(p.data[j+k]) {
						p.i = min(j+k, len(p.data))
						return "", p.unexpected("in \\u hexadecimal character escape")
					}
				}
				j += 4
			} else if j < len(p.data) && !strings.ContainsRune(`"\\/bfnrt`, rune(p.data[j])) {
				p.i = j
				return "", p.unexpected("in string escape code")
			}
		} else if c >= utf8.RuneSelf {
			plain = false
		}
	}
	if j >= len(p.data) {
		p.i = len(p.data)
		return "", p.unexpected("")
	}
	p.i = j + 1
	if plain || (utf8.Valid(p.data[start+1:j]) && bytes.IndexByte(p.data[start+1:j], '\\') < 0) {
		return string(p.data[start+1 : j]), nil
	}
	if s, ok := unescapeSimple(p.data[start+1 : j]); ok {
		return s, nil
	}
	var s string
	if err := json.Unmarshal(p.data[start:j+1], &s); err != nil {
		return "", &posError{off: start, msg: strings.TrimPrefix(err.Error(), "json: ")}
	}
	return s, nil
}

// unescapeSimple decodes a string body whose escapes are all single
// characters (\" \\ \/ \b \f \n \r \t) and whose bytes are valid UTF-8:
// the common case of templates with quotes in them. Anything else (\u
// escapes, invalid bytes) is left to encoding/json.
func unescapeSimple(b []byte) (string, bool) {
	if !utf8.Valid(b) {
		return "", false
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		switch b[i] {
		case '"', '\\', '/':
			out = append(out, b[i])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		default:
			return "", false
		}
	}
	return string(out), true
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// number reads a number literal at p.i, checking RFC 8259's grammar:
// -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (p *jparser) number() (string, error) {
	start := p.i
	d := p.data
	digits := func(ctx string) error {
		if p.i >= len(d) || d[p.i] < '0' || d[p.i] > '9' {
			return p.unexpected(ctx)
		}
		for p.i < len(d) && d[p.i] >= '0' && d[p.i] <= '9' {
			p.i++
		}
		return nil
	}
	if d[p.i] == '-' {
		p.i++
	}
	if p.i < len(d) && d[p.i] == '0' {
		p.i++
	} else if err := digits("in numeric literal"); err != nil {
		return "", err
	}
	if p.i < len(d) && d[p.i] == '.' {
		p.i++
		if err := digits("after decimal point in numeric literal"); err != nil {
			return "", err
		}
	}
	if p.i < len(d) && (d[p.i] == 'e' || d[p.i] == 'E') {
		p.i++
		if p.i < len(d) && (d[p.i] == '+' || d[p.i] == '-') {
			p.i++
		}
		if err := digits("in exponent of numeric literal"); err != nil {
			return "", err
		}
	}
	return string(d[start:p.i]), nil
}

// get returns the value under key, or nil.
func (n *jnode) get(key string) *jnode {
	for i, k := range n.keys {
		if k.name == key {
			return n.kids[i]
		}
	}
	return nil
}

// toAny converts the subtree to plain Go values (map[string]any, []any,
// string, json.Number, bool, nil).
func (n *jnode) toAny() any {
	switch n.kind {
	case jBool:
		return n.b
	case jNumber:
		return n.num()
	case jString:
		return n.str
	case jArray:
		out := make([]any, len(n.kids))
		for i, e := range n.kids {
			out[i] = e.toAny()
		}
		return out
	case jObject:
		out := make(map[string]any, len(n.keys))
		for i, k := range n.keys {
			out[k.name] = n.kids[i].toAny()
		}
		return out
	}
	return nil
}

package behaviors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	p := &jparser{data: std, dec: json.NewDecoder(bytes.NewReader(std))}
	p.dec.UseNumber()
	n, err := p.value(0)
	if err != nil {
		return nil, err
	}
	if _, err := p.dec.Token(); err != io.EOF {
		return nil, &posError{off: p.next(), msg: "unexpected data after the top-level value"}
	}
	return n, nil
}

// posError is a parse error at a byte offset.
type posError struct {
	off int
	msg string
}

func (e *posError) Error() string { return e.msg }

type jparser struct {
	data []byte
	dec  *json.Decoder
}

// next returns the offset of the next token: the decoder's offset with
// separators and whitespace skipped.
func (p *jparser) next() int {
	off := int(p.dec.InputOffset())
	for off < len(p.data) {
		switch p.data[off] {
		case ' ', '\t', '\r', '\n', ':', ',':
			off++
			continue
		}
		break
	}
	return off
}

func (p *jparser) token() (json.Token, int, error) {
	off := p.next()
	tok, err := p.dec.Token()
	if err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, int(se.Offset), &posError{off: int(se.Offset), msg: se.Error()}
		}
		if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, len(p.data), &posError{off: len(p.data), msg: "unexpected end of file"}
		}
		return nil, off, &posError{off: off, msg: err.Error()}
	}
	return tok, off, nil
}

func (p *jparser) value(depth int) (*jnode, error) {
	tok, off, err := p.token()
	if err != nil {
		return nil, err
	}
	return p.fromToken(tok, off, depth)
}

func (p *jparser) fromToken(tok json.Token, off, depth int) (*jnode, error) {
	if depth > MaxDepth {
		return nil, &posError{off: off, msg: fmt.Sprintf("nested deeper than %d levels", MaxDepth)}
	}
	n := &jnode{off: off}
	switch t := tok.(type) {
	case nil:
		n.kind = jNull
	case bool:
		n.kind, n.b = jBool, t
	case json.Number:
		n.kind, n.str = jNumber, string(t)
	case string:
		n.kind, n.str = jString, t
	case json.Delim:
		switch t {
		case '[':
			n.kind = jArray
			for p.dec.More() {
				e, err := p.value(depth + 1)
				if err != nil {
					return nil, err
				}
				n.kids = append(n.kids, e)
			}
			if _, _, err := p.token(); err != nil { // ']'
				return nil, err
			}
		case '{':
			n.kind = jObject
			seen := map[string]bool{}
			for p.dec.More() {
				ktok, koff, err := p.token()
				if err != nil {
					return nil, err
				}
				key, _ := ktok.(string)
				if seen[key] {
					return nil, &posError{off: koff, msg: fmt.Sprintf("duplicate key %s", quote(key))}
				}
				seen[key] = true
				v, err := p.value(depth + 1)
				if err != nil {
					return nil, err
				}
				n.keys = append(n.keys, jkey{name: key, off: koff})
				n.kids = append(n.kids, v)
			}
			if _, _, err := p.token(); err != nil { // '}'
				return nil, err
			}
		default:
			return nil, &posError{off: off, msg: fmt.Sprintf("unexpected %q", t)}
		}
	}
	return n, nil
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

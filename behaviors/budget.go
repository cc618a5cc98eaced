package behaviors

import (
	"fmt"
	"math"
	"reflect"
)

// DefaultBudget is the number of bytes one template execution may produce,
// counting its output and every intermediate string or list the template
// functions build (cumulatively: bytes built and dropped still count). It
// is far above what a request argument or an action needs, and small
// enough that thousands of koi executing at once stay within a school's
// memory.
const DefaultBudget = 1 << 20

// budget is the byte budget of one template execution. Functions charge it
// with what they are about to allocate before they allocate it.
type budget struct {
	limit int64
	used  int64
}

// charge takes n bytes from the budget, or fails without taking any when
// they do not fit: "template budget: repeat would produce 1.0 GB, over the
// 1 MiB budget".
func (b *budget) charge(what string, n int64) error {
	if b == nil || b.limit <= 0 {
		return nil
	}
	if n < 0 || n > b.limit-b.used {
		left := b.limit - b.used
		if left == b.limit {
			return fmt.Errorf("template budget: %s would produce %s, over the %s budget: %w", what, bytesText(n), bytesText(b.limit), ErrLimit)
		}
		return fmt.Errorf("template budget: %s would produce %s, over the %s left of the %s budget: %w", what, bytesText(n), bytesText(left), bytesText(b.limit), ErrLimit)
	}
	b.used += n
	return nil
}

// Budget is a byte budget shared by several renderings: the templates of
// one request (its arguments, URL, headers, body or JSON leaves) are each
// an execution with a budget of their own, and together they stay within
// one more, since the request holds all their output at once.
type Budget struct{ b budget }

// NewBudget returns a budget of the program's size per execution.
func (p *Program) NewBudget() *Budget { return &Budget{budget{limit: p.budget()}} }

// Charge takes n bytes for what, or fails with an error wrapping ErrLimit
// when they do not fit.
func (b *Budget) Charge(what string, n int) error { return b.b.charge(what, int64(n)) }

// bytesText renders a byte count for messages: 1.0 GB, 1 MiB, 12 bytes.
func bytesText(n int64) string {
	switch {
	case n < 0 || n == math.MaxInt64:
		return "more than 9 EB"
	case n >= 1<<20 && n%(1<<20) == 0 && n < 1<<30:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1e9:
		return fmt.Sprintf("%.1f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e4:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d bytes", n)
}

// Saturating arithmetic for size bounds: a bound that overflows is "too
// big", never a small or negative number.
func satAdd(a, b int64) int64 {
	if a < 0 || b < 0 || a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

func satMul(a, b int64) int64 {
	if a < 0 || b < 0 {
		return math.MaxInt64
	}
	if a == 0 || b == 0 {
		return 0
	}
	if a > math.MaxInt64/b {
		return math.MaxInt64
	}
	return a * b
}

// shape bounds what formatting a value can produce without formatting it:
// str is the bytes of every string in it (map keys and struct field names
// included) and nodes the number of values, both counted as the value
// prints, i.e. with shared parts counted once per reference; depth is its
// nesting. A value that contains itself has an infinite shape.
type shape struct {
	str, nodes, depth int64
}

var infinite = shape{math.MaxInt64, math.MaxInt64, math.MaxInt64}

func (s shape) add(o shape) shape {
	return shape{satAdd(s.str, o.str), satAdd(s.nodes, o.nodes), max(s.depth, o.depth)}
}

// nodeBytes bounds what one non-string value adds when printed: a number
// (at most 24 bytes), "<nil>", brackets, separators, "map[", "&{".
const nodeBytes = 32

// printBound bounds fmt's %v of a value of this shape.
func (s shape) printBound() int64 { return satAdd(s.str, satMul(s.nodes, nodeBytes)) }

// jsonBound bounds its JSON encoding: a string byte becomes at most six
// ("\u003c").
func (s shape) jsonBound() int64 { return satAdd(satMul(s.str, 6), satMul(s.nodes, nodeBytes)) }

// prettyBound bounds its indented JSON: each value on a line of its own,
// indented by at most depth × 2 spaces.
func (s shape) prettyBound() int64 {
	return satAdd(s.jsonBound(), satMul(s.nodes, satAdd(satMul(s.depth, 2), 2)))
}

// maxWalk bounds the distinct containers shapeOf visits: a value with more
// is treated as too big to format (a decoded reply of MaxResponseBody
// holds far fewer).
const maxWalk = 1 << 20

// shapeOf measures v. Containers reached twice are measured once
// (memoized by identity), so a list that holds itself twice at each of 40
// levels is measured in 40 steps and found to print as 2^40 elements.
func shapeOf(v any) shape {
	w := shapeWalker{memo: map[shapeKey]shape{}}
	return w.walk(reflect.ValueOf(v), 0)
}

type shapeKey struct {
	p    uintptr
	typ  reflect.Type
	size int
}

type shapeWalker struct {
	memo  map[shapeKey]shape
	steps int
}

var stringerType = reflect.TypeFor[fmt.Stringer]()

// inProgress marks a container being measured: meeting it again is a cycle.
var inProgress = shape{-1, -1, -1}

func (w *shapeWalker) walk(v reflect.Value, depth int) shape {
	if !v.IsValid() {
		return shape{nodes: 1, depth: 1}
	}
	if v.Kind() != reflect.Interface && v.Type().Implements(stringerType) {
		// time.Time, semver versions: fmt prints their short String
		return shape{str: 64, nodes: 1, depth: 1}
	}
	var key shapeKey
	memo := false
	switch v.Kind() {
	case reflect.Map, reflect.Pointer, reflect.Slice:
		if v.IsNil() {
			return shape{nodes: 1, depth: 1}
		}
		key = shapeKey{p: uintptr(v.UnsafePointer()), typ: v.Type()}
		if v.Kind() != reflect.Pointer {
			key.size = v.Len()
		}
		if s, ok := w.memo[key]; ok {
			if s == inProgress {
				return infinite
			}
			return s
		}
		w.steps++
		if w.steps > maxWalk || depth > 10_000 {
			return infinite
		}
		w.memo[key] = inProgress
		memo = true
	}
	var s shape
	switch v.Kind() {
	case reflect.Interface:
		if v.IsNil() {
			return shape{nodes: 1, depth: 1}
		}
		return w.walk(v.Elem(), depth)
	case reflect.String:
		s = shape{str: int64(v.Len()), nodes: 1, depth: 1}
	case reflect.Pointer:
		s = w.walk(v.Elem(), depth+1)
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 { // []byte prints as numbers or a string
			s = shape{str: int64(v.Len()) * 4, nodes: 1, depth: 1}
			break
		}
		s = shape{nodes: 1}
		var inner shape
		for i := range v.Len() {
			inner = inner.add(w.walk(v.Index(i), depth+1))
		}
		s = s.add(inner)
		s.depth = satAdd(inner.depth, 1)
	case reflect.Map:
		s = shape{nodes: 1}
		var inner shape
		it := v.MapRange()
		for it.Next() {
			inner = inner.add(w.walk(it.Key(), depth+1)).add(w.walk(it.Value(), depth+1))
		}
		s = s.add(inner)
		s.depth = satAdd(inner.depth, 1)
	case reflect.Struct:
		s = shape{nodes: 1}
		var inner shape
		t := v.Type()
		for i := range v.NumField() {
			inner = inner.add(shape{str: int64(len(t.Field(i).Name))}).add(w.walk(v.Field(i), depth+1))
		}
		s = s.add(inner)
		s.depth = satAdd(inner.depth, 1)
	default:
		s = shape{nodes: 1, depth: 1}
	}
	if memo {
		w.memo[key] = s
	}
	return s
}

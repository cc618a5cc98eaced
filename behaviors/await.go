package behaviors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Bounds of the frame conditions of awaits and error declarations.
const (
	// MaxPattern is the longest regular expression a templated `match` may
	// render (a constant one is bounded by the file).
	MaxPattern = 4096
	// MaxFieldConds is the most `fields` conditions one await or error
	// declaration may hold.
	MaxFieldConds = 32
	// MaxFieldPath is the longest dotted path of a `fields` condition, and
	// MaxPathDepth its most segments.
	MaxFieldPath = 256
	MaxPathDepth = 16
	// DefaultErrorWindow is how long a ws send without await watches for
	// an error frame when its `error` does not give `within_ms`.
	DefaultErrorWindow = time.Second
)

// FrameMatch is what an await or an error declaration looks for in the
// incoming frames: every condition given must hold. Type, Match and the
// Fields values are templates rendered once per request, before its send
// (see Bind), so a reply is matched by the id that request generated; When
// is rendered for each candidate frame with `.` = the frame's value.
type FrameMatch struct {
	// Type is the frame's classified type (`type`, or its alias `event`).
	Type    Text
	HasType bool
	// typeAt and typePath say where Type was written (file:line:col and
	// path), for the set-wide check of constant types.
	typeAt, typePath string
	// Match is an RE2 pattern the frame's raw payload must match.
	Match    Text
	HasMatch bool
	// re is Match compiled at load, when it is a constant.
	re *regexp.Regexp
	// Fields are conditions on JSON frames: the value at a dotted path
	// equals the rendered text.
	Fields []FieldMatch
	// When is a predicate template: the frame matches when it renders
	// "true" (surrounding space ignored).
	When    Text
	HasWhen bool
}

// FieldMatch is one `fields` condition: the value at Path (dotted, array
// elements by index: "payload.items.0.id") must render as Value.
type FieldMatch struct {
	Path  string
	segs  []string
	Value Text
}

// Await describes the frame a ws request waits for.
type Await struct {
	FrameMatch
	// Timeout bounds the wait (`timeout_ms`, default DefaultAwaitTimeout).
	Timeout time.Duration
}

// ErrorFrame is a ws request's `error` declaration: a frame matching it
// that arrives after the send, before the await is satisfied (or, without
// await, within Within), fails the step with outcome Error.
type ErrorFrame struct {
	FrameMatch
	// Within is the window of a request without await (`within_ms`,
	// default DefaultErrorWindow); 0 when the request awaits.
	Within time.Duration
}

// BoundMatch is a FrameMatch rendered for one request: what its frames are
// compared with. Matches may be called from any goroutine (the koi's
// reader calls it), concurrently too: `when` renderings are serialized.
type BoundMatch struct {
	typ     string
	hasType bool
	re      *regexp.Regexp
	fields  []boundField
	when    Text
	hasWhen bool
	prog    *Program
	env     *Env            // the request's variables, copied: `when` cannot change the sequence's
	ctx     context.Context // the request's: `when` renders end with it

	mu       sync.Mutex // serializes `when` renderings (env is not safe for concurrent use)
	closed   bool       // no rendering after Close
	spent    bool       // `when` hit a template limit: no further frames are tried
	whenErr  error      // the first `when` failure, for the request's error message
	whenErrs int
}

// Close ends the match's use: no `when` renders after it returns, and one
// rendering at the time has finished, so the request may use its
// variables again (a `when` sees a shallow copy of them). Nil-safe.
func (m *BoundMatch) Close() {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
}

type boundField struct {
	segs  []string
	value string
}

// Bind renders the match's per-request templates (type, match, fields
// values) with the request's environment, charging b. A rendered pattern
// that does not compile, or is longer than MaxPattern, is an error naming
// where it was written. ctx is the request's: it ends the renderings,
// and those of `when` on later frames.
func (m *FrameMatch) Bind(ctx context.Context, p *Program, env *Env, b *Budget) (*BoundMatch, error) {
	bm := &BoundMatch{hasType: m.HasType, re: m.re, when: m.When, hasWhen: m.HasWhen, prog: p, ctx: ctx}
	if m.HasType {
		s, err := p.Render(ctx, env, m.Type, nil)
		if err != nil {
			return nil, err
		}
		if err := b.Charge("the awaited type", len(s)); err != nil {
			return nil, err
		}
		if len(s) > MaxTypeName {
			return nil, fmt.Errorf("%s: the type rendered to %d bytes, longer than any frame type (%d)", m.Type.Where, len(s), MaxTypeName)
		}
		bm.typ = s
	}
	if m.HasMatch && m.re == nil {
		s, err := p.Render(ctx, env, m.Match, nil)
		if err != nil {
			return nil, err
		}
		if err := b.Charge("the awaited pattern", len(s)); err != nil {
			return nil, err
		}
		if len(s) > MaxPattern {
			return nil, fmt.Errorf("%s: the pattern rendered to %d bytes, over the %d byte limit", m.Match.Where, len(s), MaxPattern)
		}
		re, err := compilePattern(s)
		if err != nil {
			return nil, fmt.Errorf("%s: the rendered pattern %s is not a regular expression: %v (quote ids with regexQuoteMeta)", m.Match.Where, quote(s), err)
		}
		bm.re = re
	}
	if len(m.Fields) > 0 {
		bm.fields = make([]boundField, len(m.Fields))
		for i, f := range m.Fields {
			s, err := p.Render(ctx, env, f.Value, nil)
			if err != nil {
				return nil, err
			}
			if err := b.Charge("the awaited fields", len(f.Path)+len(s)); err != nil {
				return nil, err
			}
			bm.fields[i] = boundField{segs: f.segs, value: s}
		}
	}
	if m.HasWhen && !m.When.IsConst() {
		e := &Env{}
		if env != nil {
			e.Store, e.Params, e.Vars = env.Store, env.Params, maps.Clone(env.Vars)
		}
		bm.env = e
	}
	return bm, nil
}

// Matches reports whether a frame satisfies every condition: its
// classified type, its raw payload, and (JSON frames only) its fields, then
// `when` rendered with `.` = value. A `when` that fails (a template error,
// its budget) does not match; the first failure is kept for WhenError.
// Once `when` hits a template limit it is not rendered again: the request
// matches no further frame.
func (m *BoundMatch) Matches(typ string, raw []byte, value any, isJSON bool) bool {
	if m.hasType && m.typ != typ {
		return false
	}
	if m.re != nil && !m.re.Match(raw) {
		return false
	}
	if len(m.fields) > 0 {
		if !isJSON {
			return false
		}
		for _, f := range m.fields {
			if !fieldEquals(value, f.segs, f.value) {
				return false
			}
		}
	}
	if !m.hasWhen {
		return true
	}
	if m.when.IsConst() {
		return strings.TrimSpace(m.when.Const) == "true"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.spent {
		return false
	}
	out, err := m.prog.Render(m.ctx, m.env, m.when, value)
	if err != nil {
		if m.whenErr == nil {
			m.whenErr = err
		}
		m.whenErrs++
		// A `when` that hit a limit (its budget, its time) would cost as
		// much on every frame of a flood, for each waiting request: it
		// is not tried again, and its error is what the request reports.
		if errors.Is(err, ErrLimit) {
			m.spent = true
			m.whenErr = fmt.Errorf("%w (no later frame was tried)", err)
		}
		return false
	}
	return strings.TrimSpace(out) == "true"
}

// WhenError returns how many frames `when` failed on and the first
// failure (0, nil when it never failed).
func (m *BoundMatch) WhenError() (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.whenErrs, m.whenErr
}

// fieldEquals reports whether the value at segs in v prints as want:
// strings as they are, numbers as written (or numerically equal), booleans
// as true/false, null as "null". Objects and arrays never equal.
func fieldEquals(v any, segs []string, want string) bool {
	for _, s := range segs {
		switch c := v.(type) {
		case map[string]any:
			x, ok := c[s]
			if !ok {
				return false
			}
			v = x
		case []any:
			i, err := strconv.Atoi(s)
			if err != nil || i < 0 || i >= len(c) {
				return false
			}
			v = c[i]
		default:
			return false
		}
	}
	switch x := v.(type) {
	case string:
		return x == want
	case json.Number:
		if string(x) == want {
			return true
		}
		a, err1 := x.Float64()
		b, err2 := strconv.ParseFloat(want, 64)
		return err1 == nil && err2 == nil && a == b
	case float64:
		b, err := strconv.ParseFloat(want, 64)
		return err == nil && x == b
	case bool:
		return strconv.FormatBool(x) == want
	case nil:
		return want == "null"
	}
	return false
}

// errNoCondition is reported for an await or error with nothing to match.
var errNoCondition = errors.New("needs at least one of \"type\", \"match\", \"fields\" or \"when\"")

// frameMatch decodes the conditions shared by await and error, reporting
// every problem; extra names the other keys the caller allows.
func (d *decoder) frameMatch(n *jnode, path string, m *FrameMatch) {
	if v, e := n.get("type"), n.get("event"); v != nil && e != nil {
		d.sink.add(e.off, path+" › event", "give \"type\" or its alias \"event\", not both")
	}
	for _, k := range []string{"type", "event"} {
		v := n.get(k)
		if v == nil {
			continue
		}
		p := path + " › " + k
		if !d.want(v, p, jString) {
			continue
		}
		t, ok := d.text(v, p)
		if !ok {
			continue
		}
		if t.IsConst() {
			if msg := typeNameProblem(t.Const); msg != "" {
				d.sink.add(v.off, p, "%s: no frame type can match it", msg)
				continue
			}
		}
		m.Type, m.HasType = t, true
		m.typeAt, m.typePath = sinkPos(d.sink, v.off), p
	}
	if v := n.get("match"); v != nil {
		p := path + " › match"
		if d.want(v, p, jString) {
			if t, ok := d.text(v, p); ok {
				m.Match, m.HasMatch = t, true
				if t.IsConst() {
					re, err := compilePattern(t.Const)
					if err != nil {
						d.sink.add(v.off, p, "bad regular expression: %s", clip(err.Error()))
						m.HasMatch = false
					}
					m.re = re
				}
			}
		}
	}
	if v := n.get("fields"); v != nil {
		m.Fields = d.fieldMatches(v, path+" › fields")
	}
	if v := n.get("when"); v != nil {
		p := path + " › when"
		if d.want(v, p, jString) {
			if t, ok := d.text(v, p); ok {
				if t.IsConst() && strings.TrimSpace(t.Const) != "true" {
					d.sink.add(v.off, p, "the constant %s never renders \"true\": no frame can match (use a template, e.g. {{ eq .id (get \"id\") }})", quote(t.Const))
				} else {
					m.When, m.HasWhen = t, true
				}
			}
		}
	}
}

// typeNameProblem says what makes s unusable as a frame type name, or "".
func typeNameProblem(s string) string {
	switch {
	case s == "":
		return "empty"
	case len(s) > MaxTypeName:
		return fmt.Sprintf("%d bytes, longer than %d", len(s), MaxTypeName)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return fmt.Sprintf("a control character at byte %d", i)
		}
	}
	return ""
}

func (d *decoder) fieldMatches(n *jnode, path string) []FieldMatch {
	if !d.want(n, path, jObject) {
		return nil
	}
	if len(n.keys) == 0 {
		d.sink.add(n.off, path, "is empty: give at least one \"path\": \"value\"")
		return nil
	}
	if len(n.keys) > MaxFieldConds {
		d.sink.add(n.off, path, "%d conditions, more than %d", len(n.keys), MaxFieldConds)
		return nil
	}
	out := make([]FieldMatch, 0, len(n.keys))
	for i, k := range n.keys {
		p := path + "." + clip(k.name)
		segs, msg := fieldPath(k.name)
		if msg != "" {
			d.sink.add(k.off, p, "%s", msg)
			continue
		}
		v := n.kids[i]
		if v.kind == jObject || v.kind == jArray || v.kind == jNull {
			d.sink.add(v.off, p, "must be a string (a template), a number or a boolean, not %s", v.kind)
			continue
		}
		if t, ok := d.text(v, p); ok {
			out = append(out, FieldMatch{Path: k.name, segs: segs, Value: t})
		}
	}
	return out
}

// fieldPath splits a dotted path, or says what is wrong with it.
func fieldPath(s string) ([]string, string) {
	if len(s) > MaxFieldPath {
		return nil, fmt.Sprintf("path of %d bytes, longer than %d", len(s), MaxFieldPath)
	}
	segs := strings.Split(s, ".")
	if len(segs) > MaxPathDepth {
		return nil, fmt.Sprintf("path of %d segments, more than %d", len(segs), MaxPathDepth)
	}
	for _, g := range segs {
		if g == "" {
			return nil, fmt.Sprintf("path %s has an empty segment (write \"a.b\", not \"a..b\", \".a\" or \"a.\")", quote(s))
		}
	}
	return segs, ""
}

func (d *decoder) await(n *jnode, path string) *Await {
	if !d.want(n, path, jObject) {
		return nil
	}
	d.fields(n, path, "type", "event", "match", "fields", "when", "timeout_ms")
	a := &Await{Timeout: DefaultAwaitTimeout}
	d.frameMatch(n, path, &a.FrameMatch)
	if !hasCondition(n) {
		d.sink.add(n.off, path, "await %v", errNoCondition)
	}
	if v := n.get("timeout_ms"); v != nil {
		if t, ok := d.millis(v, path+" › timeout_ms"); ok && t > 0 {
			a.Timeout = t
		}
	}
	return a
}

// errorFrame decodes a ws request's `error` declaration; awaits tells
// whether the request has an await (then the window is the await's).
func (d *decoder) errorFrame(n *jnode, path string, awaits bool) *ErrorFrame {
	if !d.want(n, path, jObject) {
		return nil
	}
	d.fields(n, path, "type", "event", "match", "fields", "when", "within_ms")
	e := &ErrorFrame{}
	d.frameMatch(n, path, &e.FrameMatch)
	if !hasCondition(n) {
		d.sink.add(n.off, path, "error %v", errNoCondition)
	}
	v := n.get("within_ms")
	switch {
	case v != nil && awaits:
		d.sink.add(v.off, path+" › within_ms", "is for a send without await: with await, the error window ends when the awaited frame arrives (bound it with await › timeout_ms)")
	case v != nil:
		if t, ok := d.millis(v, path+" › within_ms"); ok {
			if t <= 0 {
				d.sink.add(v.off, path+" › within_ms", "must be more than 0: it is how long the send watches for an error frame")
			}
			e.Within = t
		}
	case !awaits:
		e.Within = DefaultErrorWindow
	}
	return e
}

func hasCondition(n *jnode) bool {
	for _, k := range []string{"type", "event", "match", "fields", "when"} {
		if n.get(k) != nil {
			return true
		}
	}
	return false
}

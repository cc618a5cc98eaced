package behaviors

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Bounds of the "frames" classifier.
const (
	// MaxFrameRules is the most rules one list (json, text, binary) holds.
	MaxFrameRules = 64
	// MaxTypeName is the longest frame type name, in bytes.
	MaxTypeName = 64
	// maxFieldPath bounds a rule's dotted field path.
	maxFieldPath, maxFieldDepth = 256, 16
	// maxPrefix bounds a prefix (decoded bytes for prefix_hex).
	maxPrefix = 256
	// maxRuleRegexp bounds a rule's regular expression source.
	maxRuleRegexp = 1024
)

// DefaultTimeField is the JSON field holding a frame's send time (unix
// milliseconds) when the set does not name one.
const DefaultTimeField = "sent_at"

// FrameKind is how an incoming frame is read: JSON text, other text, or
// binary.
type FrameKind uint8

// The frame kinds.
const (
	FrameText FrameKind = iota
	FrameJSON
	FrameBinary
)

// FrameRule is one rule of a classifier list: the first of field, match,
// prefix or template that is set names the frame.
type FrameRule struct {
	// Field is a dotted path into a JSON frame (json rules).
	Field []string
	// Match is applied to the raw text; the type is its "type" group, or
	// Type when it has none.
	Match     *regexp.Regexp
	typeGroup int // index of the "type" group, or -1
	// Prefix is a literal prefix of the raw payload (text, or binary from
	// prefix_hex); the type is Type.
	Prefix []byte
	// Template is rendered with `.` = the frame's value; its trimmed
	// output is the type.
	Template    Text
	HasTemplate bool
	// Type is the literal type of a prefix rule or a match without a
	// "type" group.
	Type string
	// SentAt, when set, renders the frame's send time in unix
	// milliseconds (fan-out delay).
	SentAt    Text
	HasSentAt bool
	// Where names the rule for errors, e.g. `frames › text[0]`.
	Where string
}

// Classifier names each incoming frame's type (the top-level "frames"). It
// is immutable once loaded and shared by every koi of a run.
type Classifier struct {
	JSON, Text, Binary []FrameRule
	// TimeField is the JSON field holding the send time for JSON frames
	// whose rule gives no sent_at ("" lets the caller choose, see
	// Classify).
	TimeField string
	prog      *Program
	given     bool
}

// Given reports whether the set gave "frames" (false for the default
// classifier).
func (c *Classifier) Given() bool { return c.given }

// DefaultClassifier names JSON frames by their "type" field, as koipond
// always did; other frames stay unnamed.
func DefaultClassifier() *Classifier {
	return &Classifier{JSON: []FrameRule{{Field: []string{"type"}, typeGroup: -1, Where: "frames › json[0]"}}}
}

// Classified is a frame after classification.
type Classified struct {
	// Type is the frame's type ("" when no rule names it).
	Type string
	// Value is the decoded JSON value (numbers as json.Number) for a JSON
	// frame, otherwise the payload as a string.
	Value any
	// Kind is how the frame was read.
	Kind FrameKind
	// SentAt is the server's send time, when the frame carried one.
	SentAt time.Time
}

// Classify decodes and names one frame. store is the koi's store, for
// templates that need it; timeField is used when the set gives none; ctx
// ends the templates' renderings (a rule whose rendering it ends names
// nothing). It never fails: a frame no rule names has Type "".
func (c *Classifier) Classify(ctx context.Context, store *Store, binary bool, raw []byte, timeField string) Classified {
	if c.TimeField != "" {
		timeField = c.TimeField
	}
	out := Classified{Kind: FrameText}
	rules := c.Text
	switch {
	case binary:
		out.Kind, out.Value, rules = FrameBinary, string(raw), c.Binary
	default:
		if v, ok := decodeJSONFrame(raw); ok {
			out.Kind, out.Value, rules = FrameJSON, v, c.JSON
		} else {
			out.Value = string(raw)
		}
	}
	var env *Env
	for i := range rules {
		r := &rules[i]
		typ := c.apply(ctx, r, &env, store, raw, out.Value)
		if typ == "" || !ValidTypeName(typ) {
			continue
		}
		out.Type = typ
		if r.HasSentAt {
			if env == nil {
				env = &Env{Store: store}
			}
			if s, err := c.prog.Render(ctx, env, r.SentAt, out.Value); err == nil {
				if f, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil {
					out.SentAt = unixMillis(f)
				}
			}
			return out
		}
		break
	}
	if out.Kind == FrameJSON && timeField != "" {
		if m, ok := out.Value.(map[string]any); ok {
			out.SentAt = sentAtOf(m[timeField])
		}
	}
	return out
}

func (c *Classifier) apply(ctx context.Context, r *FrameRule, env **Env, store *Store, raw []byte, v any) string {
	switch {
	case r.Field != nil:
		return typeOf(fieldAt(v, r.Field))
	case r.Match != nil:
		if r.typeGroup < 0 {
			if r.Match.Match(raw) {
				return r.Type
			}
			return ""
		}
		m := r.Match.FindSubmatchIndex(raw)
		if m == nil || m[2*r.typeGroup] < 0 {
			return ""
		}
		return string(raw[m[2*r.typeGroup]:m[2*r.typeGroup+1]])
	case r.Prefix != nil:
		if bytes.HasPrefix(raw, r.Prefix) {
			return r.Type
		}
		return ""
	case r.HasTemplate:
		if *env == nil {
			*env = &Env{Store: store}
		}
		s, err := c.prog.Render(ctx, *env, r.Template, v)
		if err != nil {
			return ""
		}
		return strings.TrimSpace(s)
	}
	return ""
}

// fieldAt follows a dotted path through JSON objects.
func fieldAt(v any, path []string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// FieldAt returns the value at a dotted path of a decoded JSON value (nil
// when absent).
func FieldAt(v any, path string) any { return fieldAt(v, strings.Split(path, ".")) }

// typeOf turns a field value into a type name: strings as they are,
// numbers as written.
func typeOf(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case json.Number:
		return t.String()
	}
	return ""
}

// ValidTypeName reports whether s may name a frame type: 1 to MaxTypeName
// bytes of printable ASCII.
func ValidTypeName(s string) bool {
	if len(s) == 0 || len(s) > MaxTypeName {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// decodeJSONFrame decodes a text frame that holds one JSON object or array.
func decodeJSONFrame(raw []byte) (any, bool) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || (trimmed[0] != '{' && trimmed[0] != '[') {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		return nil, false
	}
	return v, true
}

// sentAtOf reads unix milliseconds from a number or numeric string.
func sentAtOf(v any) time.Time {
	var s string
	switch t := v.(type) {
	case json.Number:
		s = string(t)
	case string:
		s = t
	default:
		return time.Time{}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return time.Time{}
	}
	return unixMillis(f)
}

// unixMillis converts plausible unix milliseconds (2001–2286) to a time;
// anything else is not a send time.
func unixMillis(ms float64) time.Time {
	if math.IsNaN(ms) || ms <= 1e12 || ms >= 1e13 {
		return time.Time{}
	}
	whole := math.Floor(ms)
	return time.UnixMilli(int64(whole)).Add(time.Duration((ms - whole) * 1e6))
}

// frames decodes the top-level "frames" object.
func (d *decoder) frames(n *jnode) *Classifier {
	const path = "frames"
	if !d.want(n, path, jObject) {
		return nil
	}
	d.fields(n, path, "json", "text", "binary", "time_field")
	c := &Classifier{prog: d.prog, given: true}
	if v := n.get("json"); v != nil {
		c.JSON = d.frameRules(v, "json")
	} else {
		c.JSON = DefaultClassifier().JSON
	}
	if v := n.get("text"); v != nil {
		c.Text = d.frameRules(v, "text")
	}
	if v := n.get("binary"); v != nil {
		c.Binary = d.frameRules(v, "binary")
	}
	if v := n.get("time_field"); v != nil {
		if s, ok := d.str(v, path+" › time_field"); ok {
			if s == "" || len(s) > MaxTypeName {
				d.sink.add(v.off, path+" › time_field", "must be 1 to %d bytes, not %d", MaxTypeName, len(s))
			} else {
				c.TimeField = s
			}
		}
	}
	return c
}

// ruleKeys are the keys that say how a rule names a frame, per list.
var ruleKeys = map[string][]string{
	"json":   {"field", "match", "prefix", "template"},
	"text":   {"match", "prefix", "template"},
	"binary": {"prefix_hex", "template"},
}

func (d *decoder) frameRules(n *jnode, list string) []FrameRule {
	base := "frames › " + list
	if !d.want(n, base, jArray) {
		return nil
	}
	if len(n.kids) > MaxFrameRules {
		d.sink.add(n.off, base, "%d rules; at most %d", len(n.kids), MaxFrameRules)
		return nil
	}
	out := make([]FrameRule, 0, len(n.kids))
	always := -1 // the first rule that names every frame
	for i, e := range n.kids {
		path := fmt.Sprintf("%s[%d]", base, i)
		if always >= 0 {
			d.sink.warn(e.off, path, "never used: rule %d before it names every frame", always)
		}
		r, ok := d.frameRule(e, path, list)
		if !ok {
			continue
		}
		if r.Match != nil && r.typeGroup < 0 && r.Match.MatchString("") && always < 0 {
			always = i
		}
		if r.HasTemplate && r.Template.IsConst() && always < 0 {
			always = i
		}
		out = append(out, r)
	}
	return out
}

func (d *decoder) frameRule(n *jnode, path, list string) (FrameRule, bool) {
	r := FrameRule{typeGroup: -1, Where: path}
	if !d.want(n, path, jObject) {
		return r, false
	}
	kinds := ruleKeys[list]
	d.fields(n, path, "field", "match", "prefix", "prefix_hex", "template", "type", "sent_at")
	var given []string
	for _, k := range []string{"field", "match", "prefix", "prefix_hex", "template"} {
		if n.get(k) != nil {
			given = append(given, k)
		}
	}
	for _, k := range given {
		ok := false
		for _, a := range kinds {
			ok = ok || a == k
		}
		if !ok {
			d.sink.add(n.get(k).off, path+" › "+k, "%q is not used by %s rules (use one of %s)", k, list, strings.Join(kinds, ", "))
			return r, false
		}
	}
	switch len(given) {
	case 0:
		if len(n.keys) == 0 || n.get("type") != nil || n.get("sent_at") != nil { // else a misspelt key was reported
			d.sink.add(n.off, path, "a rule needs one of %s", strings.Join(kinds, ", "))
		}
		return r, false
	case 1:
	default:
		d.sink.add(n.get(given[1]).off, path, "give one of %s, not both %q and %q", strings.Join(kinds, ", "), given[0], given[1])
		return r, false
	}
	ok := true
	typeNeeded := false
	kn := n.get(given[0])
	kpath := path + " › " + given[0]
	switch given[0] {
	case "field":
		s, good := d.str(kn, kpath)
		parts := strings.Split(s, ".")
		switch {
		case !good:
			ok = false
		case s == "" || len(s) > maxFieldPath || len(parts) > maxFieldDepth || strings.Contains("."+s+".", ".."):
			d.sink.add(kn.off, kpath, "%s is not a dotted field path (1 to %d names, %d bytes at most, e.g. \"payload.kind\")",
				quote(s), maxFieldDepth, maxFieldPath)
			ok = false
		default:
			r.Field = parts
		}
	case "match":
		s, good := d.str(kn, kpath)
		if !good {
			return r, false
		}
		if len(s) > maxRuleRegexp {
			d.sink.add(kn.off, kpath, "a %d-byte regular expression; at most %d", len(s), maxRuleRegexp)
			return r, false
		}
		re, err := compilePattern(s)
		if err != nil {
			d.sink.add(kn.off, kpath, "bad regular expression: %v", err)
			return r, false
		}
		r.Match, r.typeGroup = re, re.SubexpIndex("type")
		if r.typeGroup >= 0 && typeGroupOnlyEmpty(s) {
			d.sink.add(kn.off, kpath, "the (?P<type>…) group only ever matches \"\": no frame can be named by it (give it something to capture, e.g. (?P<type>[a-z]+))")
			return r, false
		}
		if r.typeGroup < 0 {
			typeNeeded = true
		} else if tn := n.get("type"); tn != nil {
			d.sink.add(tn.off, path+" › type", "the regular expression has a (?P<type>…) group that names the type: drop \"type\"")
			ok = false
		}
	case "prefix":
		s, good := d.str(kn, kpath)
		switch {
		case !good:
			ok = false
		case s == "" || len(s) > maxPrefix:
			d.sink.add(kn.off, kpath, "must be 1 to %d bytes, not %d", maxPrefix, len(s))
			ok = false
		default:
			r.Prefix = []byte(s)
		}
		typeNeeded = true
	case "prefix_hex":
		s, good := d.str(kn, kpath)
		if !good {
			return r, false
		}
		b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
		switch {
		case err != nil:
			d.sink.add(kn.off, kpath, "%s is not hex bytes (e.g. \"20\" or \"30 0a\"): %v", quote(s), err)
			ok = false
		case len(b) == 0 || len(b) > maxPrefix:
			d.sink.add(kn.off, kpath, "must be 1 to %d bytes, not %d", maxPrefix, len(b))
			ok = false
		default:
			r.Prefix = b
		}
		typeNeeded = true
	case "template":
		t, good := d.text(kn, kpath)
		if !good {
			return r, false
		}
		r.Template, r.HasTemplate = t, true
		if t.IsConst() && !ValidTypeName(strings.TrimSpace(t.Const)) {
			d.sink.add(kn.off, kpath, "the constant %s is not a type name (1 to %d printable bytes); use a template", quote(t.Const), MaxTypeName)
			ok = false
		}
	}
	if tn := n.get("type"); tn != nil && !typeNeeded && (given[0] == "field" || given[0] == "template") {
		d.sink.add(tn.off, path+" › type", "%q names the type itself: drop \"type\"", given[0])
		ok = false
	}
	if typeNeeded {
		tn := n.get("type")
		if tn == nil {
			what := given[0]
			if what == "match" {
				what = "a match without a (?P<type>…) group"
			}
			d.sink.add(n.off, path, "%s rule needs \"type\" (the type name it gives)", what)
			return r, false
		}
		if s, good := d.str(tn, path+" › type"); good {
			if !ValidTypeName(s) {
				d.sink.add(tn.off, path+" › type", "%s is not a type name (1 to %d printable ASCII bytes)", quote(s), MaxTypeName)
				ok = false
			}
			r.Type = s
		} else {
			ok = false
		}
	}
	if v := n.get("sent_at"); v != nil {
		if t, good := d.text(v, path+" › sent_at"); good {
			r.SentAt, r.HasSentAt = t, true
		} else {
			ok = false
		}
	}
	return r, ok
}

package behaviors

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func parseOne(t testing.TB, request string) (*Request, *Program) {
	t.Helper()
	// A connect request may only run in boot.
	if strings.Contains(request, `"connect"`) {
		set, diags := Parse(File{Name: "t.json", Data: []byte(`{"boot": {"steps": [{"request": ` + request + `}]}}`)})
		if set == nil {
			t.Fatalf("%s: %v", request, diags)
		}
		return set.Boot.Steps[0].Request, set.Prog
	}
	set, diags := Parse(File{Name: "t.json", Data: []byte(`{"behaviors": {"x": {"frequency": 0.1, "steps": [{"request": ` + request + `}]}}}`)})
	if set == nil {
		t.Fatalf("%s: %v", request, diags)
	}
	return set.Behavior("x").Sequence.Steps[0].Request, set.Prog
}

// Every request has a bounded metric key; a constant await type names it,
// a request's own key overrides it.
func TestRequestKeys(t *testing.T) {
	tests := []struct {
		request, want string
	}{
		// a send without await
		{`{"type": "ws", "text": "x"}`, "ws:send"},
		// a constant type names the await (and its alias event)
		{`{"type": "ws", "text": "x", "await": {"type": "pong"}}`, "ws:pong"},
		{`{"type": "ws", "text": "x", "await": {"event": "hello"}}`, "ws:hello"},
		// a templated type could be anything: one key for all
		{`{"type": "ws", "text": "x", "await": {"type": "{{ get \"t\" }}"}}`, "ws:match"},
		// a pattern or fields only
		{`{"type": "ws", "text": "x", "await": {"match": "^ok"}}`, "ws:match"},
		{`{"type": "ws", "text": "x", "await": {"fields": {"id": "1"}}}`, "ws:match"},
		// a named key wins, prefixed by the request type
		{`{"type": "ws", "key": "login", "text": "x", "await": {"type": "pong"}}`, "ws:login"},
		{`{"type": "api", "key": "auth/login.v2", "method": "auth.login"}`, "api:auth/login.v2"},
		{`{"type": "http", "key": "home", "url": "http://x/{{ koiIndex }}"}`, "http:home"},
		// defaults of the other types are unchanged
		{`{"type": "api", "method": "auth.login"}`, "api:auth.login"},
		{`{"type": "http", "method": "put", "url": "http://x/"}`, "http:PUT http://x/"},
		// connect
		{`{"type": "connect"}`, "connect:open"},
		{`{"type": "connect", "key": "first"}`, "connect:first"},
	}
	for _, tt := range tests {
		if r, _ := parseOne(t, tt.request); r.Key != tt.want {
			t.Errorf("%s: key %q, want %q", tt.request, r.Key, tt.want)
		}
	}
}

func TestEncodingDecode(t *testing.T) {
	tests := []struct {
		enc  Encoding
		in   string
		want []byte
		bad  bool
	}{
		{Base64, "AAEC", []byte{0, 1, 2}, false},
		{Base64, "AAE=", []byte{0, 1}, false},
		{Base64, "AAE", []byte{0, 1}, false}, // unpadded
		{Base64, " AAE= \n", []byte{0, 1}, false},
		{Base64, "", []byte{}, false},
		{Base64, "A!==", nil, true},
		{Hex, "20 02\n00 00", []byte{0x20, 2, 0, 0}, false},
		{Hex, "2", nil, true},
		{Hex, "zz", nil, true},
		{Raw, "\x00\xff", []byte{0, 0xff}, false},
	}
	for _, tt := range tests {
		got, err := tt.enc.Decode(tt.in)
		if (err != nil) != tt.bad || !bytes.Equal(got, tt.want) {
			t.Errorf("%s %q: %v, %v; want %v (error: %v)", tt.enc, tt.in, got, err, tt.want, tt.bad)
		}
	}
}

func decodeValue(t *testing.T, s string) any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// An await's templates are rendered once per request with the request's
// variables, and every condition must hold.
func TestBoundMatch(t *testing.T) {
	r, prog := parseOne(t, `{"type": "ws", "text": "x", "await": {"type": "{{ get \"t\" }}",
	    "match": "\"id\":{{ get \"id\" }}[,}]",
	    "fields": {"id": "{{ get \"id\" }}", "payload.items.1": "b", "payload.ok": true, "payload.n": "1.5"},
	    "when": "{{ $s := get \"seen\" }}{{ set \"seen\" 1 }}{{ eq (printf \"%v\" .payload.room) (get \"room\") }}"}}`)
	env := &Env{Store: NewStore(Identity{}), Vars: map[string]any{"t": "reply", "id": 7, "room": "r1"}}
	m, err := r.Await.Bind(context.Background(), prog, env, prog.NewBudget())
	if err != nil {
		t.Fatal(err)
	}
	frame := `{"type":"reply","id":7,"payload":{"items":["a","b"],"ok":true,"n":1.50,"room":"r1"}}`
	tests := []struct {
		typ, raw string
		json     bool
		want     bool
	}{
		{"reply", frame, true, true},
		// another type
		{"other", frame, true, false},
		// another id: the pattern and the field differ
		{"reply", strings.Replace(frame, `"id":7`, `"id":70`, 1), true, false},
		// a field differs
		{"reply", strings.Replace(frame, `"ok":true`, `"ok":false`, 1), true, false},
		{"reply", strings.Replace(frame, `["a","b"]`, `["a"]`, 1), true, false},
		// when says no
		{"reply", strings.Replace(frame, `"r1"`, `"r2"`, 1), true, false},
		// fields need a JSON frame
		{"reply", frame, false, false},
	}
	for _, tt := range tests {
		var v any = tt.raw
		if tt.json {
			v = decodeValue(t, tt.raw)
		}
		if got := m.Matches(tt.typ, []byte(tt.raw), v, tt.json); got != tt.want {
			t.Errorf("%s %s json=%v: %v, want %v", tt.typ, tt.raw, tt.json, got, tt.want)
		}
	}
	// `when` ran with a copy of the variables: its set did not reach the
	// sequence's.
	if _, ok := env.Vars["seen"]; ok {
		t.Error("a when template changed the request's variables")
	}
}

// A templated pattern that renders to a bad regular expression, or one too
// long, fails the request with an error naming where it was written; a
// type longer than any frame type too.
func TestBindErrors(t *testing.T) {
	src := `{"behaviors": {"x": {"frequency": 0.1, "steps": [{"request": {"type": "ws", "text": "x",
	    "await": {"match": "{{ get \"p\" }}", "type": "{{ get \"t\" }}"}}}]}}}`
	set, diags := Parse(File{Name: "t.json", Data: []byte(src)})
	if set == nil {
		t.Fatal(diags)
	}
	a := set.Behavior("x").Sequence.Steps[0].Request.Await
	tests := []struct {
		vars map[string]any
		want string
	}{
		{map[string]any{"p": "(", "t": "a"}, `t.json:2:25: behavior "x" › step 1 › request › await › match: the rendered pattern "(" is not a regular expression`},
		{map[string]any{"p": strings.Repeat("a", MaxPattern+1), "t": "a"}, "over the 4096 byte limit"},
		{map[string]any{"p": "a", "t": strings.Repeat("t", 65)}, "longer than any frame type (64)"},
	}
	for _, tt := range tests {
		_, err := a.Bind(context.Background(), set.Prog, &Env{Store: NewStore(Identity{}), Vars: tt.vars}, set.Prog.NewBudget())
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v, want %q", tt.vars, err, tt.want)
		}
	}
}

func TestFieldEquals(t *testing.T) {
	v := decodeValue(t, `{"a":{"b":[1,"x",null,{"c":2e3}]},"t":true,"n":"7"}`)
	tests := []struct {
		path, want string
		ok         bool
	}{
		{"a.b.0", "1", true},
		{"a.b.0", "1.0", true}, // numerically equal
		{"a.b.1", "x", true},
		{"a.b.2", "null", true},
		{"a.b.3.c", "2000", true},
		{"a.b.3.c", "2e3", true},
		{"t", "true", true},
		{"n", "7", true},
		{"a.b.4", "1", false},  // out of range
		{"a.b.-1", "1", false}, // not an index
		{"a.b", "1", false},    // an array never equals
		{"a.x", "", false},     // missing
		{"t.x", "", false},     // into a scalar
	}
	for _, tt := range tests {
		segs, msg := fieldPath(tt.path)
		if msg != "" {
			t.Fatal(msg)
		}
		if got := fieldEquals(v, segs, tt.want); got != tt.ok {
			t.Errorf("%s = %q: %v, want %v", tt.path, tt.want, got, tt.ok)
		}
	}
}

func TestHasAPISteps(t *testing.T) {
	tests := []struct {
		src  string
		want bool
	}{
		{`{"behaviors": {"x": {"frequency": 0.1, "steps": [{"request": {"type": "ws", "text": "x"}}]}}}`, false},
		{`{"behaviors": {"x": {"frequency": 0.1, "steps": [{"request": {"type": "http", "url": "http://x/"}}]}}}`, false},
		{`{"behaviors": {"x": {"frequency": 0.1, "steps": [{"pre_actions": ["{{ set \"a\" 1 }}"]}, {"request": {"type": "api", "method": "m"}}]}}}`, true},
		{`{"boot": {"steps": [{"request": {"type": "api", "method": "rtm.connect"}}]}, "behaviors": {}}`, true},
		{`{"behaviors": {"x": {"frequency": 0.1}}, "sequences": {"x": {"steps": [{"request": {"type": "api", "method": "m"}}]}}}`, true},
		{`{"on_connect": {"steps": [{"request": {"type": "api", "method": "auth.login"}}]}, "behaviors": {}}`, true},
		{`{"on_disconnect": {"steps": [{"request": {"type": "api", "method": "auth.bye"}}]}, "behaviors": {}}`, true},
		{`{"on_event": {"hello": {"steps": [{"request": {"type": "api", "method": "m"}}]}}, "behaviors": {}}`, true},
		{`{"on_event": {"hello": ["{{ set \"a\" 1 }}"]}, "behaviors": {}}`, false},
	}
	for _, tt := range tests {
		set, diags := Parse(File{Name: "t.json", Data: []byte(tt.src)})
		if set == nil {
			t.Fatalf("%s: %v", tt.src, diags)
		}
		if got := set.HasAPISteps(); got != tt.want {
			t.Errorf("%s: HasAPISteps %v, want %v", tt.src, got, tt.want)
		}
	}
}

// Paths are bounded in bytes and depth, and have no empty segment.
func TestFieldPathBounds(t *testing.T) {
	for _, tt := range []struct {
		path, want string
	}{
		{strings.Repeat("a.", MaxPathDepth-1) + "a", ""},
		{strings.Repeat("a.", MaxPathDepth) + "a", "more than 16"},
		{strings.Repeat("a", MaxFieldPath+1), "longer than 256"},
		{"a.", "empty segment"},
		{".a", "empty segment"},
	} {
		_, msg := fieldPath(tt.path)
		if (tt.want == "") != (msg == "") || !strings.Contains(msg, tt.want) {
			t.Errorf("%.40q: %q, want %q", tt.path, msg, tt.want)
		}
	}
}

// FuzzFrameMatch: no frame makes matching panic, whatever its shape (a
// hostile server chooses it), and a `when` stays within its limits.
func FuzzFrameMatch(f *testing.F) {
	r, prog := parseOne(f, `{"type": "ws", "text": "x", "await": {"type": "reply", "match": "id",
	    "fields": {"id": "7", "a.0.b": "true", "n": "1e3"}, "when": "{{ printf \"%v\" . | len | lt 3 }}"}}`)
	m, err := r.Await.Bind(context.Background(), prog, &Env{Store: NewStore(Identity{})}, prog.NewBudget())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(`{"type":"reply","id":7,"a":[{"b":true}],"n":1000}`)
	f.Add(`{"id":[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]}`)
	f.Add(`{"a":{"0":{"b":"true"}},"id":"7","n":"1e3"}`)
	f.Add("\x00\xff id")
	f.Fuzz(func(t *testing.T, frame string) {
		dec := json.NewDecoder(strings.NewReader(frame))
		dec.UseNumber()
		var v any
		isJSON := dec.Decode(&v) == nil
		if !isJSON {
			v = frame
		}
		m.Matches("reply", []byte(frame), v, isJSON)
	})
}

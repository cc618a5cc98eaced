package behaviors

import (
	"context"
	"errors"
	"math/rand/v2"
	"reflect"
	"regexp/syntax"
	"strconv"
	"strings"
	"testing"
	"time"
)

// parseErrs parses one file and returns its diagnostics as text, one per
// line, failing the test when the set loads although want is not empty.
func parseErrs(t *testing.T, src string) string {
	t.Helper()
	set, diags := Parse(File{Name: "bad.json", Data: []byte(src)})
	var lines []string
	for _, d := range diags {
		lines = append(lines, d.String())
	}
	out := strings.Join(lines, "\n")
	if set != nil && diags.HasErrors() {
		t.Fatalf("a set with errors loaded: %s", out)
	}
	return out
}

// What the load can know never matches is a positioned error at load:
// an await or error type no rule of an all-literal classifier produces, a
// prefix_hex that is not hex, a type group that only ever captures "", a
// constant binary payload that does not decode, a pattern whose counted
// repeats spell out a huge program.
func TestNeverMatchingAtLoad(t *testing.T) {
	literal := `"frames": {"json": [], "text": [{"prefix": "PING", "type": "ping"}, {"match": "^OK ", "type": "ok"}],
	  "binary": [{"prefix_hex": "20", "type": "connack"}, {"template": "suback"}]}`
	tests := []struct {
		name, src, want string
	}{
		{"await type no literal rule names", `{` + literal + `, "behaviors": {"x": {"frequency": 0.1, "steps": [
  {"request": {"type": "ws", "text": "x", "await": {"type": "pong"}}}]}}}`,
			`bad.json:3:61: behavior "x" › step 1 › request › await › type: no rule of "frames" names a frame "pong", so nothing can match (the rules name "connack", "ok", "ping", "suback"); did you mean "ping"?`},
		{"error type alias no literal rule names", `{` + literal + `, "behaviors": {"x": {"frequency": 0.1, "steps": [
  {"request": {"type": "ws", "text": "x", "error": {"event": "nack"}}}]}}}`,
			`bad.json:3:62: behavior "x" › step 1 › request › error › event: no rule of "frames" names a frame "nack"`},
		{"in on_connect, frames in the same file", `{` + literal + `, "on_connect": {"steps": [
  {"request": {"type": "ws", "text": "x", "await": {"type": "connak"}}}]}}`,
			`did you mean "connack"?`},
		{"prefix_hex not hex", `{"frames": {"binary": [{"prefix_hex": "2g", "type": "x"}]}, "behaviors": {}}`,
			`bad.json:1:39: frames › binary[0] › prefix_hex: "2g" is not hex bytes`},
		{"type group only empty", `{"frames": {"text": [{"match": "^x(?P<type>)"}]}, "behaviors": {}}`,
			`bad.json:1:32: frames › text[0] › match: the (?P<type>…) group only ever matches "": no frame can be named by it`},
		{"type group only anchors", `{"frames": {"text": [{"match": "(?P<type>^\\b$)"}]}, "behaviors": {}}`,
			`only ever matches ""`},
		{"constant binary not base64", `{"behaviors": {"x": {"frequency": 0.1, "steps": [{"request": {"type": "ws", "binary": "!!!"}}]}}}`,
			`bad.json:1:87: behavior "x" › step 1 › request › binary`},
		{"constant binary not hex", `{"behaviors": {"x": {"frequency": 0.1, "steps": [{"request": {"type": "ws", "binary": "2g", "encoding": "hex"}}]}}}`,
			`behavior "x" › step 1 › request › binary`},
		{"repeat bomb in a rule", `{"frames": {"text": [{"match": "[ab]{1000}c", "type": "x"}]}, "behaviors": {}}`,
			`bad.json:1:32: frames › text[0] › match: bad regular expression: pattern too large`},
		{"repeat bomb in an await", `{"behaviors": {"x": {"frequency": 0.1, "steps": [{"request": {"type": "ws", "text": "x", "await": {"match": "[ab]{500}[cd]{600}"}}}]}}}`,
			`› await › match: bad regular expression: pattern too large`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseErrs(t, tt.src)
			if !strings.Contains(got, tt.want) {
				t.Errorf("diagnostics:\n%s\nwant one containing\n%s", got, tt.want)
			}
		})
	}
}

// The type check applies only when every rule is literal: a field, a
// type group or a templated rule may name anything; a templated await type
// is known only at run time; the default classifier names JSON frames by
// their "type" field.
func TestAwaitTypeCheckOnlyWhenKnowable(t *testing.T) {
	for _, src := range []string{
		`{"behaviors": {"x": {"frequency": 0.1, "steps": [{"request": {"type": "ws", "text": "x", "await": {"type": "pong"}}}]}}}`,
		`{"frames": {"text": [{"prefix": "PING", "type": "ping"}]}, "behaviors": {"x": {"frequency": 0.1, "steps": [{"request": {"type": "ws", "text": "x", "await": {"type": "pong"}}}]}}}`,
		`{"frames": {"json": [], "text": [{"match": "^(?P<type>[a-z]+)"}]}, "behaviors": {"x": {"frequency": 0.1, "steps": [{"request": {"type": "ws", "text": "x", "await": {"type": "pong"}}}]}}}`,
		`{"frames": {"json": [], "binary": [{"template": "{{ mqttType . }}"}]}, "behaviors": {"x": {"frequency": 0.1, "steps": [{"request": {"type": "ws", "text": "x", "await": {"type": "pong"}}}]}}}`,
		`{"frames": {"json": [], "text": [{"prefix": "P", "type": "ping"}]}, "behaviors": {"x": {"frequency": 0.1, "steps": [{"request": {"type": "ws", "text": "x", "await": {"type": "{{ get \"t\" }}"}}}]}}}`,
		`{"frames": {"json": [], "text": [{"prefix": "P", "type": "ping"}]}, "behaviors": {"x": {"frequency": 0.1, "steps": [{"request": {"type": "ws", "text": "x", "await": {"type": "ping"}}}]}}}`,
	} {
		if got := parseErrs(t, src); got != "" {
			t.Errorf("%s:\n%s", src, got)
		}
	}
}

// The classifier and the await type may come from different files: the
// check runs once the set is whole and points into the await's file.
func TestAwaitTypeCheckAcrossFiles(t *testing.T) {
	_, diags := Parse(
		File{Name: "a.json", Data: []byte(`{"behaviors": {"x": {"frequency": 0.1, "steps": [
  {"request": {"type": "ws", "text": "x", "await": {"type": "pong"}}}]}}}`)},
		File{Name: "b.json", Data: []byte(`{"frames": {"json": [], "text": [{"prefix": "PONG", "type": "pong!"}]}}`)})
	want := `a.json:2:61: behavior "x" › step 1 › request › await › type: no rule of "frames" names a frame "pong"`
	if !diags.HasErrors() || !strings.Contains(diags.Error(), want) {
		t.Errorf("diagnostics %v, want %q", diags, want)
	}
}

// A templated pattern is bounded when it is rendered: one that spells out
// a huge program fails the request at once instead of compiling for most
// of a second (and 100 MB) per request.
func TestRenderedPatternBomb(t *testing.T) {
	src := `{"behaviors": {"x": {"frequency": 0.1, "steps": [{"request": {"type": "ws", "text": "x",
	    "await": {"match": "{{ get \"p\" }}"}}}]}}}`
	set, diags := Parse(File{Name: "t.json", Data: []byte(src)})
	if set == nil {
		t.Fatal(diags)
	}
	a := set.Behavior("x").Sequence.Steps[0].Request.Await
	bomb := strings.Repeat("a{1000}", MaxPattern/7)
	start := time.Now()
	_, err := a.Bind(context.Background(), set.Prog, &Env{Store: NewStore(Identity{}), Vars: map[string]any{"p": bomb}}, set.Prog.NewBudget())
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "pattern too large") {
		t.Fatalf("bomb bound: %v, want \"pattern too large\"", err)
	}
	t.Logf("refused in %v", took)
	// Patterns of the usual kinds stay well within the bound.
	for _, p := range []string{
		`^42\["said",\{"id":"` + strings.Repeat(`[0-9a-f]`, 36) + `"`,
		`^(?P<type>connack|suback|unsuback|puback|pubrec|pubrel|pubcomp|publish|pingresp)`,
		`"id":"abc\-123\-def\-456"`, `[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`,
	} {
		if _, err := a.Bind(context.Background(), set.Prog, &Env{Store: NewStore(Identity{}), Vars: map[string]any{"p": p}}, set.Prog.NewBudget()); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

// The size estimate spells out counted repeats, nested ones too, without
// overflowing.
func TestPatternSize(t *testing.T) {
	for _, tt := range []struct {
		p    string
		want int // MaxPatternSize+1: over
	}{
		{"abc", 3},
		{"a{1000}", MaxPatternSize + 1},
		{"(?:(?:a{10}){10}){5}", MaxPatternSize + 1},
		{"a{600}b{600}", MaxPatternSize + 1},
		{"(?:a{10}){10}", 210},
		{"a{2,}", 6},
		{"ab|cd", 6},
	} {
		re, err := syntax.Parse(tt.p, syntax.Perl)
		if err != nil {
			t.Fatal(err)
		}
		if n := patternSize(re); n != tt.want {
			t.Errorf("%s: size %d, want %d", tt.p, n, tt.want)
		}
	}
}

// Frames built to hurt: nesting past the JSON decoder's depth limit, a
// wide object, a type name far over the bound from a template or a
// Socket.IO event. Each is classified (or left unnamed) in bounded time,
// never with a type outside the bounds; fields conditions just miss.
func TestHostileFramesClassified(t *testing.T) {
	set, diags := Parse(File{Name: "h.json", Data: []byte(`{"behaviors": {"x": {"frequency": 0.1, "steps": [
	  {"request": {"type": "ws", "text": "x", "await": {"fields": {"a.a.a.a": "1", "k99999": "v"}}}}]}},
	  "frames": {"json": [{"field": "a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a"}, {"template": "{{ sioType (toJson .) }}"}, {"field": "type"}],
	    "text": [{"template": "{{ if hasPrefix \"42\" . }}{{ sioType . }}{{ else }}{{ repeat 100000 \"t\" }}{{ end }}"}]}}`)})
	if set == nil {
		t.Fatal(diags)
	}
	c := set.Frames
	m, err := set.Behavior("x").Sequence.Steps[0].Request.Await.Bind(context.Background(), set.Prog, &Env{Store: NewStore(Identity{})}, set.Prog.NewBudget())
	if err != nil {
		t.Fatal(err)
	}
	wide := func() string {
		var b strings.Builder
		b.WriteString(`{"type":"wide"`)
		for i := range 100000 {
			b.WriteString(`,"k` + itoa(i) + `":"v"`)
		}
		return b.String() + "}"
	}()
	for _, f := range []struct{ name, raw, want string }{
		{"deep arrays", strings.Repeat("[", 200000) + strings.Repeat("]", 200000), ""},
		{"deep objects", strings.Repeat(`{"a":`, 100000) + "1" + strings.Repeat("}", 100000), ""},
		{"wide object", wide, "wide"},
		{"huge template output", "hello", ""},
		{"huge sio event name", `42["` + strings.Repeat("e", 1<<20) + `",1]`, ""},
	} {
		start := time.Now()
		got := c.Classify(context.Background(), NewStore(Identity{}), false, []byte(f.raw), "")
		took := time.Since(start)
		if got.Type != f.want {
			t.Errorf("%s: type %q, want %q", f.name, clip(got.Type), f.want)
		}
		isJSON := got.Kind == FrameJSON
		m.Matches(got.Type, []byte(f.raw), got.Value, isJSON)
		t.Logf("%s (%d bytes): classified in %v", f.name, len(f.raw), took)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// Every decoding koi function takes any bytes: an error or a value, never
// a panic (called directly, as a template would hide a panic as an error).
func TestDecodersTakeGarbage(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 6))
	inputs := []string{"", "\x00", "\xff\xff\xff\xff\xff", "\x30\xff\xff\xff\x7f", "\x32\x00", "42", "42[", `42/`, `451-`, "4" + strings.Repeat("9", 40)}
	for range 3000 {
		b := make([]byte, rng.IntN(64))
		for i := range b {
			b[i] = byte(rng.Uint32())
			if rng.IntN(4) == 0 { // lean toward the packets' leading bytes
				b[i] = "0123456789[]{}\",/-\x10\x20\x30\x32\x82\x90\xb0\xd0\xe0\xff\x00\x02\x04\x7f\x80"[rng.IntN(31)]
			}
		}
		inputs = append(inputs, string(b))
	}
	fm := funcMap(&binding{env: &Env{Store: NewStore(Identity{})}, budget: budget{limit: DefaultBudget}})
	call := func(name string, args ...any) {
		in := make([]reflect.Value, len(args))
		for i, a := range args {
			in[i] = reflect.ValueOf(a)
		}
		reflect.ValueOf(fm[name]).Call(in)
	}
	for _, in := range inputs {
		for _, name := range []string{"mqttDecode", "mqttType", "mqttPacketID", "sioDecode", "sioType", "readVarint", "hexdec", "bytesLen", "mustB64dec"} {
			call(name, in)
		}
		for _, n := range []int{-1, 0, 1, 2, 3, 4, 8} {
			call("lenPrefixRead", n, in)
		}
	}
}

// A `when` that runs into its template budget is tried on one frame, not
// on every frame of a flood: each try costs a whole budget of work on the
// koi's reader, for each waiting request.
func TestWhenOverBudgetTriedOnce(t *testing.T) {
	src := `{"behaviors": {"x": {"frequency": 0.1, "steps": [{"request": {"type": "ws", "text": "x",
	    "await": {"when": "{{ $n := 0 }}{{ range until 10000 }}{{ $n = add $n (len (toJson $)) }}{{ end }}{{ eq $n -1 }}"}}}]}}}`
	set, diags := Parse(File{Name: "t.json", Data: []byte(src)})
	if set == nil {
		t.Fatal(diags)
	}
	m, err := set.Behavior("x").Sequence.Steps[0].Request.Await.Bind(context.Background(), set.Prog, &Env{Store: NewStore(Identity{})}, set.Prog.NewBudget())
	if err != nil {
		t.Fatal(err)
	}
	value := map[string]any{"type": "reply", "id": strings.Repeat("x", 200)}
	for range 20 {
		if m.Matches("reply", []byte("{}"), value, true) {
			t.Fatal("a when over its budget matched")
		}
	}
	n, werr := m.WhenError()
	if n != 1 || !errors.Is(werr, ErrLimit) || !strings.Contains(werr.Error(), "no later frame was tried") {
		t.Errorf("when rendered %d times (%v), want once, then given up", n, werr)
	}
}

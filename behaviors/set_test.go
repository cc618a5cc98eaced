package behaviors

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Every bad file yields errors naming file, line:col, path and problem, and
// no set.
func TestBadFiles(t *testing.T) {
	tests := []struct {
		file string
		want []string // each must appear in some diagnostic, in order of the diagnostics
	}{
		// a misspelt field is named, with a suggestion
		{"unknown_field.json", []string{`unknown_field.json:4:18: behavior "chat.postMessage" › step 1: unknown field "requets" (did you mean "request"?)`}},
		// both ends of [0,1] are enforced, each at its own position
		{"frequency_range.json", []string{`frequency_range.json:2:23: behavior "a" › frequency: 1.5 is outside [0, 1]`,
			`frequency_range.json:3:23: behavior "b" › frequency: -0.1 is outside [0, 1]`}},
		// wrong JSON types
		{"wrong_type.json", []string{`wrong_type.json:2:23: behavior "x" › frequency: must be a number, not a string`,
			`wrong_type.json:2:108: behavior "x" › step 1 › delay_after_ms: must be a number, not a string`}},
		// request types are api, http, ws
		{"request_type.json", []string{`request_type.json:2:62: behavior "x" › step 1 › request › type: unknown request type "grpc"`}},
		// template errors name behavior, step, action index and template line
		{"template_parse.json", []string{`template_parse.json:8:11: behavior "conversations.history" › step 2 › pre_actions[1]: template line 2: function "randomChanel" not defined`}},
		// an argument's template
		{"template_unclosed.json", []string{`template_unclosed.json:3:71: behavior "x" › step 1 › request › args.channel: template line 1: unexpected EOF`}},
		// a frequency needs a sequence somewhere
		{"frequency_without_steps.json", []string{`frequency_without_steps.json:1:43: behavior "lonely": has a frequency but no steps in any file`}},
		// JSON syntax errors carry the position
		{"syntax.json", []string{`syntax.json:2:27: invalid JSON: invalid character '"' after object key:value pair`}},
		// env is removed from sprig: it reads the environment
		{"env_removed.json", []string{`env_removed.json:2:58: behavior "x" › step 1 › pre_actions[0]: template line 1: function "env" not defined`}},
		// ws and http requests need their fields; bad regexps are caught
		{"ws_missing.json", []string{`ws_missing.json:2:88: behavior "x" › step 1 › request › await › match: bad regular expression`,
			`ws_missing.json:3:52: behavior "y" › step 1 › request: a ws request needs "text", "json", "binary" or "await"`,
			`ws_missing.json:4:52: behavior "z" › step 1 › request: an http request needs "url"`}},
		// unknown top-level keys and wrong shapes
		{"top_level.json", []string{`top_level.json:1:3: top level: unknown field "behavior" (did you mean "behaviors"?)`,
			`top_level.json:1:44: on_event "message": must be an array of actions or a sequence object {"steps": […]}, not a string`}},
		// duplicate keys are ambiguous: an error, not last-one-wins
		{"duplicate_key.json", []string{`duplicate_key.json:3:3: invalid JSON: duplicate key "x"`}},
		// every frames rule: one way to name a frame, the keys its list allows,
		// a literal type where the rule gives none, bounded printable names
		{"frames.json", []string{
			`frames.json:7:3: frames: unknown field "time_feld" (did you mean "time_field"?)`,
			`frames.json:3:22: frames › json[0] › field: "payload..kind" is not a dotted field path`,
			`frames.json:3:55: frames › json[1] › prefix_hex: "prefix_hex" is not used by json rules (use one of field, match, prefix, template)`,
			`frames.json:4:22: frames › text[0] › match: bad regular expression`,
			`frames.json:4:56: frames › text[1]: prefix rule needs "type"`,
			`frames.json:4:118: frames › text[2] › type: the regular expression has a (?P<type>…) group that names the type: drop "type"`,
			`frames.json:5:29: frames › binary[0] › prefix_hex: "2g" is not hex bytes`,
			`frames.json:5:88: frames › binary[1]: give one of prefix_hex, template, not both "prefix_hex" and "template"`,
			`frames.json:6:27: frames › binary[2] › template: template line 1: function "mqttTyp" not defined`,
			`frames.json:6:76: frames › binary[3] › type: "bad\ttype" is not a type name`,
			`frames.json:6:91: frames › binary[4]: unknown field "prefx_hex" (did you mean "prefix_hex"?)`}},
		// connect only in boot, no ws request once the connection has ended,
		// on_event keys are frame types
		{"lifecycle.json", []string{
			`lifecycle.json:5:2: top level: unknown field "on_conect" (did you mean "on_connect"?)`,
			`lifecycle.json:2:48: on_connect › step 1 › request › type: a connect request runs only in boot`,
			`lifecycle.json:3:51: on_disconnect › step 1 › request › type: a ws request cannot run in on_disconnect`,
			`lifecycle.json:1:71: behavior "x" › step 1 › request › type: a connect request runs only in boot`,
			`lifecycle.json:4:55: on_event "ping" › step 1 › request › type: a connect request runs only in boot`,
			`lifecycle.json:4:70: on_event "bad\x01type": "bad\x01type" is not a frame type`,
			`lifecycle.json:4:118: on_event "n": must be an array of actions or a sequence object`}},
		// define/template could recurse: refused
		{"define.json", []string{`define.json:2:58: behavior "x" › step 1 › pre_actions[0]: template define and block are not allowed`}},
		// await conditions that can never match or are malformed: type and its alias both, a constant when, an empty path segment, no condition, a type longer than any frame type, an object value, a misspelt field
		{"await_conditions.json", []string{`await_conditions.json:2:119: behavior "both" › step 1 › request › await › event: give "type" or its alias "event", not both`,
			`await_conditions.json:3:105: behavior "never" › step 1 › request › await › when: the constant "false" never renders "true": no frame can match (use a template, e.g. {{ eq .id (get "id") }})`,
			`await_conditions.json:4:109: behavior "path" › step 1 › request › await › fields.payload..id: path "payload..id" has an empty segment (write "a.b", not "a..b", ".a" or "a.")`,
			`await_conditions.json:5:95: behavior "empty" › step 1 › request › await: await needs at least one of "type", "match", "fields" or "when"`,
			`await_conditions.json:6:105: behavior "long" › step 1 › request › await › type: 70 bytes, longer than 64: no frame type can match it`,
			`await_conditions.json:7:115: behavior "value" › step 1 › request › await › fields.id: must be a string (a template), a number or a boolean, not an object`,
			`await_conditions.json:8:97: behavior "typo" › step 1 › request › await: unknown field "feilds" (did you mean "fields"?)`}},
		// binary payloads: literals that do not decode, an unknown encoding, encoding without binary, two payloads, binary outside ws
		{"binary_payload.json", []string{`binary_payload.json:2:84: behavior "b64" › step 1 › request › binary: binary payload is not base64: illegal base64 data at input byte 3`,
			`binary_payload.json:3:84: behavior "hex" › step 1 › request › binary: binary payload is not hex: encoding/hex: invalid byte: U+0067 'g'`,
			`binary_payload.json:4:104: behavior "enc" › step 1 › request › encoding: unknown encoding "base46" (did you mean "base64"?)`,
			`binary_payload.json:5:99: behavior "nobin" › step 1 › request › encoding: "encoding" is for a "binary" payload`,
			`binary_payload.json:6:97: behavior "two" › step 1 › request: give one of "text", "json" or "binary", not text and binary`,
			`binary_payload.json:7:100: behavior "api" › step 1 › request › binary: "binary" is not used by api requests`}},
		// request keys: bounded, named characters only, a string
		{"request_key.json", []string{`request_key.json:2:92: behavior "space" › step 1 › request › key: "log in" has ' ' at byte 3: a key is letters, digits and _ . : / -`,
			`request_key.json:3:95: behavior "long" › step 1 › request › key: must be 1 to 64 bytes, not 65`,
			`request_key.json:4:101: behavior "empty" › step 1 › request › key: must be 1 to 64 bytes, not 0`,
			`request_key.json:5:92: behavior "num" › step 1 › request › key: must be a string, not a number`}},
		// error declarations: a window > 0 without await, no window with await, a condition needed, a bad regexp, ws only
		{"error_frame.json", []string{`error_frame.json:2:128: behavior "zero" › step 1 › request › error › within_ms: must be more than 0: it is how long the send watches for an error frame`,
			`error_frame.json:3:155: behavior "window" › step 1 › request › error › within_ms: is for a send without await: with await, the error window ends when the awaited frame arrives (bound it with await › timeout_ms)`,
			`error_frame.json:4:96: behavior "nothing" › step 1 › request › error: error needs at least one of "type", "match", "fields" or "when"`,
			`error_frame.json:5:107: behavior "regex" › step 1 › request › error › match: bad regular expression: error parsing regexp: missing closing )`,
			`error_frame.json:6:105: behavior "http" › step 1 › request › error: "error" is not used by http requests`}},
		// ws keys that would mix requests into the connection counts
		{"reserved_key.json", []string{`reserved_key.json:2:92: behavior "close" › step 1 › request › key: "close:1000" is reserved: ws:close:1000 counts the koi's connections, not requests`,
			`reserved_key.json:3:92: behavior "dial" › step 1 › request › key: "connect" is reserved: ws:connect counts the koi's connections, not requests`}},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		seen[tt.file] = true
		t.Run(tt.file, func(t *testing.T) {
			set, diags := Load(filepath.Join("testdata", "bad", tt.file))
			if set != nil {
				t.Fatalf("a bad file loaded: %+v", set)
			}
			if !diags.HasErrors() {
				t.Fatal("no errors reported")
			}
			var lines []string
			for _, d := range diags {
				lines = append(lines, d.String())
			}
			i := 0
			for _, w := range tt.want {
				for i < len(lines) && !strings.Contains(lines[i], w) {
					i++
				}
				if i == len(lines) {
					t.Errorf("missing (in order) %q\ngot:\n%s", w, strings.Join(lines, "\n"))
					return
				}
				i++
			}
			if len(lines) != len(tt.want) {
				t.Errorf("got %d diagnostics, want exactly %d (no follow-on noise):\n%s", len(lines), len(tt.want), strings.Join(lines, "\n"))
			}
		})
	}
	files, _ := filepath.Glob("testdata/bad/*.json")
	for _, f := range files {
		if !seen[filepath.Base(f)] {
			t.Errorf("%s has no row in the table", f)
		}
	}
}

// The seed's behavior loads verbatim from its two files and merges by key.
func TestSeedLoadsAndMerges(t *testing.T) {
	set, diags := Load("../examples/seed/frequencies.json", "../examples/seed/sequences.json")
	if set == nil {
		t.Fatal(diags)
	}
	if len(diags) != 0 {
		t.Errorf("unexpected diagnostics: %v", diags)
	}
	b := set.Behavior("conversations.history")
	if b == nil || !b.HasFrequency || b.Frequency != 0.2393 || b.Sequence == nil {
		t.Fatalf("merged behavior = %+v", b)
	}
	st := b.Sequence.Steps[0]
	if len(st.Pre) != 3 || st.Request == nil || len(st.Request.Args) != 6 || len(st.Post) != 3 {
		t.Errorf("step = %d pre, %+v request, %d post; want 3, 6 args, 3", len(st.Pre), st.Request, len(st.Post))
	}
	if b.Doc != "Calls the conversations.history API endpoint with a random channel" {
		t.Errorf("doc = %q", b.Doc)
	}
	// The frequency alone is an error; the sequence alone a warning.
	if s, d := Load("../examples/seed/frequencies.json"); s != nil || !d.HasErrors() {
		t.Errorf("frequencies alone loaded")
	}
	s, d := Load("../examples/seed/sequences.json")
	if s == nil || d.HasErrors() || len(d.Warnings()) != 1 || !strings.Contains(d[0].String(), "no frequency") {
		t.Errorf("sequences alone: set=%v diags=%v, want a set and one warning", s != nil, d)
	}
	// Giving the frequency twice is an error naming the first place.
	f, _ := ReadFiles("../examples/seed/frequencies.json")
	_, d = Parse(f[0], File{Name: "again.json", Data: f[0].Data})
	if !strings.Contains(d.Error(), "frequency already given in ../examples/seed/frequencies.json:6:19") {
		t.Errorf("duplicate frequency: %v", d)
	}
}

// Every example set loads.
func TestExamplesLoad(t *testing.T) {
	set, diags := Load("../examples/slack/frequencies.json", "../examples/slack/sequences.json")
	if set == nil {
		t.Fatal(diags)
	}
	if set.Boot == nil || set.OnEvent["message"] == nil || len(set.OnEvent["message"].Actions) != 2 || len(set.Behaviors) != 8 {
		t.Errorf("slack set: boot=%v on_event=%+v behaviors=%d", set.Boot != nil, set.OnEvent["message"], len(set.Behaviors))
	}
	for _, b := range set.Behaviors {
		if !b.HasFrequency || b.Sequence == nil {
			t.Errorf("behavior %s: frequency %v, sequence %v", b.Name, b.HasFrequency, b.Sequence != nil)
		}
	}
}

// The one-file shape with "sequences" beside "behaviors" (Slack's talk).
func TestSequencesBesideBehaviors(t *testing.T) {
	set, diags := Parse(File{Name: "one.json", Data: []byte(`{
	  "behaviors": {"a": {"frequency": 0.5}},
	  "sequences": {"a": {"doc": "d", "steps": [{"request": {"type": "http", "url": "http://127.0.0.1/x", "method": "put",
	      "headers": {"X-Koi": "{{ koiIndex }}"}, "json": {"n": 1, "s": "{{ koiIndex }}", "l": [true, null]}}}]}}}`)})
	if set == nil {
		t.Fatal(diags)
	}
	b := set.Behavior("a")
	if !b.HasFrequency || b.Sequence == nil || b.Sequence.Steps[0].Request.Method != "PUT" {
		t.Fatalf("behavior = %+v", b)
	}
	env := &Env{Store: NewStore(Identity{Index: 9})}
	v, err := b.Sequence.Steps[0].Request.JSON.Render(context.Background(), set.Prog, env, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := v.(map[string]any)
	if m["s"] != "9" || m["n"] == nil || len(m["l"].([]any)) != 2 {
		t.Errorf("rendered json = %#v", m)
	}
}

// Loading never half-applies: a set with one bad behavior among good ones
// is refused whole.
func TestNoHalfLoadedSet(t *testing.T) {
	set, diags := Parse(File{Name: "mixed.json", Data: []byte(`{"behaviors": {
	  "good": {"frequency": 0.1, "steps": [{"request": {"type": "api", "method": "auth.test"}}]},
	  "bad": {"frequency": 0.1, "steps": [{"request": {"type": "api", "method": "x", "args": {"a": "{{ nope }}"}}}]}}}`)})
	if set != nil || !diags.HasErrors() {
		t.Fatalf("set with a bad behavior loaded: %v", diags)
	}
	var d Diagnostics
	if !errors.As(diags, &d) || len(d) != 1 {
		t.Errorf("diags = %v", diags)
	}
}

// Hourly profiles and the time zone they are counted in.
func TestHourlyProfiles(t *testing.T) {
	good := `{"timezone": "America/New_York", "behaviors": {"a": {"frequency": 0.1,
	  "hourly": [0,0,0,0,0,0,1,1,2,2,2,2,2,2,2,2,1,1,1,1,1,0,0,0], "steps": [{"request": {"type": "api", "method": "a"}}]}}}`
	set, diags := Parse(File{Name: "h.json", Data: []byte(good)})
	if set == nil || len(diags) != 0 {
		t.Fatal(diags)
	}
	if b := set.Behavior("a"); len(b.Hourly) != 24 || b.Hourly[8] != 2 || set.Timezone.String() != "America/New_York" {
		t.Errorf("hourly %v tz %v", b.Hourly, set.Timezone)
	}
	for _, tc := range []struct{ src, want string }{
		{`{"behaviors": {"a": {"frequency": 0.1, "hourly": [1, 2]}}}`, "needs 24 multipliers"},
		{`{"timezone": "Mars/Olympus", "behaviors": {}}`, `unknown time zone "Mars/Olympus"`},
		{`{"behaviors": {"a": {"frequency": 0.1, "hourly": [-1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}}}`, "is outside [0, 1000]"},
	} {
		if _, d := Parse(File{Name: "h.json", Data: []byte(tc.src)}); !strings.Contains(d.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.src, d, tc.want)
		}
	}
	_, d := Parse(File{Name: "h.json", Data: []byte(`{"behaviors": {"a": {"frequency": 0.1, "hourly": [3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3],
	  "steps": [{"request": {"type": "api", "method": "a"}}]}}}`)})
	if w := d.Warnings(); len(w) != 1 || !strings.Contains(w[0].Msg, "average 3.000") {
		t.Errorf("mean ≠ 1 not warned: %v", d)
	}
}

func TestMissingFile(t *testing.T) {
	_, diags := Load("testdata/does-not-exist.json")
	if !diags.HasErrors() || diags[0].File != "testdata/does-not-exist.json" {
		t.Fatalf("diags = %v", diags)
	}
	big := filepath.Join(t.TempDir(), "big.json")
	if err := os.WriteFile(big, make([]byte, MaxFileSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, diags := Load(big); !strings.Contains(diags.Error(), "larger than") {
		t.Errorf("oversized file: %v", diags)
	}
}

// FUNCTIONS.md documents exactly the koi functions the templates get.
func TestFunctionsDocumented(t *testing.T) {
	doc, err := os.ReadFile("FUNCTIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	want := GenerateFunctionsDoc()
	if string(doc) != want {
		if os.Getenv("UPDATE") != "" {
			if err := os.WriteFile("FUNCTIONS.md", []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Error("FUNCTIONS.md is out of date; run: UPDATE=1 go test -run TestFunctionsDocumented ./behaviors/")
	}
	names := FuncNames()
	for _, f := range KoiFuncs {
		if !slices.Contains(names, f.Name) {
			t.Errorf("documented function %s does not exist", f.Name)
		}
	}
	for _, n := range []string{"set", "get", "halt", "randomChannel", "setCurrentChannel", "addMessages", "extractStrings",
		"addUserIDs", "pickString", "stringArray"} {
		if !slices.ContainsFunc(KoiFuncs, func(f FuncDoc) bool { return f.Name == n }) {
			t.Errorf("the seed's function %s is not documented", n)
		}
	}
	for n := range RemovedSprig {
		if slices.Contains(names, n) {
			t.Errorf("removed function %s is still callable", n)
		}
	}
}

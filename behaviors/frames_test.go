package behaviors

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func classifierOf(t *testing.T, frames string) *Classifier {
	t.Helper()
	set, diags := Parse(File{Name: "frames.json", Data: []byte(`{"behaviors": {}` + frames + `}`)})
	if set == nil {
		t.Fatalf("parsing: %v", diags)
	}
	return set.Frames
}

// Each kind of rule names the frames it should, in list order, and a
// frame no rule names has no type; type names from the wire are bounded.
func TestClassify(t *testing.T) {
	c := classifierOf(t, `, "frames": {
	  "json": [{"field": "payload.kind"}, {"match": "\"op\":(?P<type>[0-9]+)"}, {"field": "type"}],
	  "text": [{"prefix": "PING", "type": "ping"}, {"match": "^(?P<type>[a-z]+)\\|", "sent_at": "{{ index (splitList \"|\" .) 1 }}"},
	           {"match": "^42\\[", "type": "sio-event"}],
	  "binary": [{"prefix_hex": "20 02", "type": "connack"}, {"template": "{{ if eq (len .) 1 }}one-byte{{ end }}"}],
	  "time_field": "ts_ms"}`)
	const ms = 1764000000123
	tests := []struct {
		name   string
		binary bool
		raw    string
		typ    string
		kind   FrameKind
		sentAt bool
	}{
		// a nested field path comes first
		{"nested field", false, `{"payload":{"kind":"chat"},"type":"message"}`, "chat", FrameJSON, false},
		// a number is formatted as written, through a regexp over the JSON text
		{"json regexp", false, `{"op":10,"d":{}}`, "10", FrameJSON, false},
		// the last rule: the "type" field, with the set's time field
		{"type field", false, `{"type":"message","ts_ms":1764000000123}`, "message", FrameJSON, true},
		// a JSON frame no rule names
		{"json unnamed", false, `{"nothing":true}`, "", FrameJSON, false},
		// broken JSON is text: text rules, never an error
		{"broken json", false, `{"type":`, "", FrameText, false},
		{"prefix", false, "PING 1", "ping", FrameText, false},
		// a named group, and the rule's own sent_at template
		{"regexp group", false, "chat|1764000000123|hi", "chat", FrameText, true},
		{"regexp literal type", false, `42["message",1]`, "sio-event", FrameText, false},
		{"text unnamed", false, "hello", "", FrameText, false},
		{"binary prefix", true, "\x20\x02\x00\x00", "connack", FrameBinary, false},
		// a binary frame never goes to the JSON rules, even if it looks like JSON
		{"binary json-looking", true, `{"type":"x"}`, "", FrameBinary, false},
		{"binary template", true, "\xd0", "one-byte", FrameBinary, false},
		// a type from the wire longer than MaxTypeName is not a name
		{"long type", false, `{"type":"` + strings.Repeat("x", MaxTypeName+1) + `"}`, "", FrameJSON, false},
		// nor is one with control bytes
		{"control bytes", false, `{"type":"a\nb"}`, "", FrameJSON, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := c.Classify(context.Background(), nil, tt.binary, []byte(tt.raw), "sent_at")
			if got.Type != tt.typ || got.Kind != tt.kind {
				t.Errorf("type %q kind %d, want %q kind %d", got.Type, got.Kind, tt.typ, tt.kind)
			}
			if tt.sentAt && !got.SentAt.Equal(time.UnixMilli(ms)) {
				t.Errorf("sent at %v, want %v", got.SentAt, time.UnixMilli(ms))
			}
			if !tt.sentAt && !got.SentAt.IsZero() {
				t.Errorf("sent at %v, want none", got.SentAt)
			}
			switch tt.kind {
			case FrameJSON:
				if _, ok := got.Value.(map[string]any); !ok {
					t.Errorf("value %T, want the decoded object", got.Value)
				}
			default:
				if got.Value != tt.raw {
					t.Errorf("value %#v, want the payload as a string", got.Value)
				}
			}
		})
	}
}

// Without "frames", JSON frames are named by "type" and timed by the
// caller's time field, as before; numbers stay json.Number.
func TestDefaultClassifier(t *testing.T) {
	c := classifierOf(t, "")
	got := c.Classify(context.Background(), nil, false, []byte(`{"type":"message","sent_at":"1764000000123","n":1}`), "sent_at")
	if got.Type != "message" || !got.SentAt.Equal(time.UnixMilli(1764000000123)) {
		t.Errorf("%+v", got)
	}
	if n := got.Value.(map[string]any)["n"]; n != json.Number("1") {
		t.Errorf("number %#v, want json.Number", n)
	}
	if got := c.Classify(context.Background(), nil, false, []byte("plain text"), "sent_at"); got.Type != "" || got.Value != "plain text" {
		t.Errorf("%+v", got)
	}
	// implausible send times are ignored
	if got := c.Classify(context.Background(), nil, false, []byte(`{"type":"m","sent_at":12}`), "sent_at"); !got.SentAt.IsZero() {
		t.Errorf("sent at %v from 12 ms", got.SentAt)
	}
}

// A rule that names every frame hides the rules after it: a warning at
// the hidden rule.
func TestUnreachableFrameRule(t *testing.T) {
	set, diags := Parse(File{Name: "w.json", Data: []byte(`{"behaviors": {}, "frames": {"text": [
  {"match": "", "type": "any"},
  {"prefix": "PING", "type": "ping"}]}}`)})
	if set == nil {
		t.Fatal(diags)
	}
	want := `w.json:3:3: warning: frames › text[1]: never used: rule 0 before it names every frame`
	if len(diags) != 1 || !strings.Contains(diags[0].String(), want) {
		t.Errorf("diagnostics %q, want %q", diags, want)
	}
}

func BenchmarkClassifyDefaultJSON(b *testing.B) {
	c := DefaultClassifier()
	raw := []byte(`{"type":"message","channel":"C1","user":"U9","text":"hello there, koi","ts":"1700000003.000001","sent_at":1764000000123}`)
	b.ReportAllocs()
	for b.Loop() {
		c.Classify(context.Background(), nil, false, raw, "sent_at")
	}
}

// No frame, however hostile, makes the classifier panic or return a type
// name outside the bounds.
func FuzzClassify(f *testing.F) {
	set, diags := Parse(File{Name: "fuzz.json", Data: []byte(`{"behaviors": {}, "frames": {
	  "json": [{"field": "a.b.c"}, {"match": "\"op\":(?P<type>[0-9]+)"}, {"template": "{{ .kind }}"}, {"field": "type"}],
	  "text": [{"prefix": "P", "type": "p"}, {"match": "^(?P<type>[^|]*)\\|", "sent_at": "{{ . }}"}, {"template": "{{ . }}"}],
	  "binary": [{"prefix_hex": "20", "type": "connack"}, {"template": "{{ printf \"%x\" . }}", "sent_at": "{{ len . }}"}]}}`)})
	if set == nil {
		f.Fatal(diags)
	}
	for _, s := range []string{`{"type":"x"}`, `{"a":{"b":{"c":7}}}`, `[1,2]`, `{"op":10}`, `{"kind":{}}`, "P", "a|b", "\x20\x00", "{", ""} {
		f.Add(false, []byte(s))
		f.Add(true, []byte(s))
	}
	f.Fuzz(func(t *testing.T, binary bool, raw []byte) {
		got := set.Frames.Classify(context.Background(), nil, binary, raw, "sent_at")
		if got.Type != "" && !ValidTypeName(got.Type) {
			t.Fatalf("type %q out of bounds", got.Type)
		}
		if got.Kind == FrameJSON && binary {
			t.Fatal("a binary frame read as JSON")
		}
	})
}

package behaviors

import (
	"context"
	"reflect"
	"testing"
)

// frameTypeClassifiers are classifiers ClassifyType can apply without
// decoding: the default one, and field (nested too), match and prefix
// rules with a time field.
func frameTypeClassifiers(t testing.TB) []*Classifier {
	set, diags := Parse(File{Name: "frames.json", Data: []byte(`{"behaviors": {}, "frames": {
	  "json": [{"field": "payload.kind"}, {"match": "\"op\":(?P<type>[0-9]+)"}, {"prefix": "{\"x", "type": "x-frame"}, {"field": "type"}],
	  "time_field": "ts_ms"}}`)})
	if set == nil {
		t.Fatalf("parsing: %v", diags)
	}
	return []*Classifier{DefaultClassifier(), set.Frames}
}

// checkClassifyType holds ClassifyType to Classify on one frame: when it
// classifies, the type, kind and send time are Classify's, and
// DecodeFrame gives Classify's value.
func checkClassifyType(t *testing.T, c *Classifier, raw []byte) {
	t.Helper()
	want := c.Classify(context.Background(), nil, false, raw, "sent_at")
	got, ok := c.ClassifyType(false, raw, "sent_at")
	if !ok {
		if want.Kind == FrameJSON && raw[0] == '{' && reflect.DeepEqual(want.Value, DecodeFrame(raw)) && len(c.JSON) == 1 {
			// a plain JSON object the default classifier should have scanned
			t.Errorf("%q: not classified without decoding", raw)
		}
		return
	}
	if got.Type != want.Type || got.Kind != want.Kind || !got.SentAt.Equal(want.SentAt) || got.Value != nil {
		t.Errorf("%q: ClassifyType = %+v, Classify = %+v", raw, got, want)
	}
	if v := DecodeFrame(raw); !reflect.DeepEqual(v, want.Value) {
		t.Errorf("%q: DecodeFrame = %v, Classify's value %v", raw, v, want.Value)
	}
}

func TestClassifyTypeAgreesWithClassify(t *testing.T) {
	frames := []string{
		`{"type":"message","channel":"C1","text":"hi","sent_at":1764000000123}`, // an event with a send time
		`{"type":"typing","sent_at":"1764000000123.5"}`,                         // a send time as a string
		`{"type":"a","type":"b"}`,                                               // a repeated key: the last wins
		`{"type":"t\u00e9st"}`,                                                  // an escaped type
		`{"type":42}`, `{"type":-1.5e3}`,                                        // numbers as written
		`{"type":true}`, `{"type":null}`, `{"type":{"a":1}}`, // no type
		`{"payload":{"kind":"chat"},"type":"message","ts_ms":1}`,                              // a nested field
		`{"payload":{"kind":{"deep":1}},"op":7}`,                                              // a regexp over the text
		`{"xy":1}`,                                                                            // a prefix
		`[{"type":"in-an-array"}]`,                                                            // not an object
		`{"type":"x"} `, `{"type":"x"}}`, `{"type":"x"}]`, `{"type":"x"}{}`, `{"type":"x"} z`, // what may follow
		` {"type":"lead"}`, "\u00a0{\"type\":\"nbsp\"}", // leading spaces
		`{"type":"\u0001"}`, `{"type":"` + string(make([]byte, 70)) + `"}`, // type names refused
		`{"type":"cut`, `{"type":}`, `not json`, `{}`, `[]`, // not JSON or empty
	}
	for _, c := range frameTypeClassifiers(t) {
		for _, f := range frames {
			checkClassifyType(t, c, []byte(f))
		}
	}
}

func FuzzClassifyType(f *testing.F) {
	for _, s := range []string{`{"type":"message","sent_at":1}`, `{"payload":{"kind":"x"}}`, `{"op":3}`, `[1]`, `{"type":"a"}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) == 0 {
			return
		}
		for _, c := range frameTypeClassifiers(t) {
			checkClassifyType(t, c, raw)
		}
	})
}

// A classifier with a template rule is not applied without decoding.
func TestClassifyTypeLeavesTemplatesToClassify(t *testing.T) {
	c := classifierOf(t, `, "frames": {"json": [{"template": "{{ .kind }}"}]}`)
	if _, ok := c.ClassifyType(false, []byte(`{"kind":"a"}`), ""); ok {
		t.Fatal("a template rule was applied to raw bytes")
	}
}

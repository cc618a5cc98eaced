package koi

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
)

// benchFrames is a Slack-style message frame with a send time: the shape
// of most frames a chat run receives.
func benchFrame() []byte {
	ms := strconv.FormatInt(time.Now().UnixMilli(), 10)
	return []byte(`{"type":"message","channel":"C1","user":"U9","text":"hello there, koi","ts":"1700000003.000001","sent_at":` + ms + `}`)
}

func benchKoi(b *testing.B, src string) *Koi {
	b.Helper()
	set, diags := behaviors.Parse(behaviors.File{Name: "bench.json", Data: []byte(src)})
	if set == nil {
		b.Fatal(diags)
	}
	rt, err := NewRuntime(RuntimeConfig{Set: set})
	if err != nil {
		b.Fatal(err)
	}
	return rt.New(behaviors.Identity{Index: 1}, 1)
}

// BenchmarkHandleFrame is the reader's work for one JSON frame with the
// default classifier (no "frames" in the set): decode, classify by
// "type", record the fan-out delay, offer it to waiters.
func BenchmarkHandleFrame(b *testing.B) {
	k := benchKoi(b, `{"behaviors": {}}`)
	frame := benchFrame()
	b.ReportAllocs()
	for b.Loop() {
		k.handleFrame(context.Background(), false, frame, nil)
	}
}

// BenchmarkHandleFrameClassified runs the reader's work for frames named
// by each kind of rule.
func BenchmarkHandleFrameClassified(b *testing.B) {
	set := `{"behaviors": {}, "frames": {
	  "json": [{"field": "payload.kind"}, {"field": "type"}],
	  "text": [{"prefix": "PING", "type": "ping"}, {"match": "^(?P<type>[a-z]+)\\|"}],
	  "binary": [{"prefix_hex": "20", "type": "connack"}, {"template": "{{ if gt (len .) 3 }}long{{ end }}"}]}}`
	for _, c := range []struct {
		name   string
		binary bool
		frame  []byte
	}{
		{"json-nested-field", false, []byte(`{"payload":{"kind":"chat","text":"hello there, koi"},"id":42}`)},
		{"json-second-rule", false, benchFrame()},
		{"text-prefix", false, []byte("PING 12345")},
		{"text-regexp", false, []byte("chat|room-1|hello there, koi")},
		{"binary-prefix", true, []byte{0x20, 0x02, 0x00, 0x00}},
		{"binary-template", true, []byte{0x30, 0x0a, 0x00, 0x03, 'a', '/', 'b', 'h', 'i'}},
		{"text-unnamed", false, []byte("nothing names this frame")},
	} {
		b.Run(c.name, func(b *testing.B) {
			k := benchKoi(b, set)
			b.ReportAllocs()
			for b.Loop() {
				k.handleFrame(context.Background(), c.binary, c.frame, nil)
			}
		})
	}
}

// BenchmarkFrameDecode measures the default classifier (JSON, "type",
// send time) on a typical event.
func BenchmarkFrameDecode(b *testing.B) {
	frame := benchFrame()
	c := behaviors.DefaultClassifier()
	b.ReportAllocs()
	for b.Loop() {
		if got := c.Classify(context.Background(), nil, false, frame, DefaultEventTimeField); got.Type != "message" {
			b.Fatal(got)
		}
	}
}

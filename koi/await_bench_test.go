package koi

import (
	"context"
	"testing"

	"github.com/koipond/koipond/behaviors"
)

// BenchmarkDeliver is what one incoming frame costs the koi's reader while
// requests wait: nothing to match, per-request fields, a `when` template.
func BenchmarkDeliver(b *testing.B) {
	set, diags := behaviors.Parse(behaviors.File{Name: "bench.json", Data: []byte(`{"behaviors": {
	  "fields": {"steps": [{"request": {"type": "ws", "text": "x", "await": {"type": "reply", "fields": {"id": "{{ get \"id\" }}"}}}}]},
	  "when": {"steps": [{"request": {"type": "ws", "text": "x", "await": {"when": "{{ eq .id (get \"id\") }}"}}}]}}}`)})
	if set == nil {
		b.Fatal(diags)
	}
	rt, err := NewRuntime(RuntimeConfig{Set: set})
	if err != nil {
		b.Fatal(err)
	}
	frame := &Frame{Raw: []byte(`{"type":"reply","id":"other"}`), Type: "reply", JSON: true,
		Value: map[string]any{"type": "reply", "id": "other"}}
	for _, tt := range []struct {
		name    string
		waiters int
	}{{"none", 0}, {"fields", 4}, {"when", 4}} {
		b.Run(tt.name, func(b *testing.B) {
			k := rt.New(behaviors.Identity{}, 1)
			for i := range tt.waiters {
				env := &behaviors.Env{Store: k.store, Vars: map[string]any{"id": string(rune('a' + i))}}
				bm, err := set.Behavior(tt.name).Sequence.Steps[0].Request.Await.Bind(context.Background(), set.Prog, env, set.Prog.NewBudget())
				if err != nil {
					b.Fatal(err)
				}
				k.addWaiter(bm, nil)
			}
			b.ReportAllocs()
			for b.Loop() {
				k.deliver(frame, nil)
			}
			if len(k.waiters) != tt.waiters {
				b.Fatalf("a frame no waiter matches was taken: %d waiters left of %d", len(k.waiters), tt.waiters)
			}
		})
	}
}

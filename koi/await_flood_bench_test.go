package koi

import (
	"context"
	"fmt"
	"testing"

	"github.com/koipond/koipond/behaviors"
)

// BenchmarkDeliverCostlyWhen is a frame flood against waiting requests
// whose `when` runs into its template budget: each request pays for that
// once, on the first frame, not on every frame (ns/op is per frame; it was
// 218 ms with 4 waiters and 1.2 s with 16 when every frame rendered them).
func BenchmarkDeliverCostlyWhen(b *testing.B) {
	set, diags := behaviors.Parse(behaviors.File{Name: "bench.json", Data: []byte(`{"behaviors": {
	  "costly": {"steps": [{"request": {"type": "ws", "text": "x", "await": {
	    "when": "{{ $n := 0 }}{{ range until 10000 }}{{ $n = add $n (len (toJson $)) }}{{ end }}{{ eq $n -1 }}"}}}]}}}`)})
	if set == nil {
		b.Fatal(diags)
	}
	rt, err := NewRuntime(RuntimeConfig{Set: set})
	if err != nil {
		b.Fatal(err)
	}
	frame := &Frame{Raw: []byte(`{"type":"reply","id":"other"}`), Type: "reply", JSON: true,
		Value: map[string]any{"type": "reply", "id": "other"}}
	for _, waiters := range []int{4, 16} {
		b.Run(fmt.Sprint(waiters, "waiters"), func(b *testing.B) {
			k := rt.New(behaviors.Identity{}, 1)
			var bms []*behaviors.BoundMatch
			for range waiters {
				env := &behaviors.Env{Store: k.store}
				bm, err := set.Behavior("costly").Sequence.Steps[0].Request.Await.Bind(context.Background(), set.Prog, env, set.Prog.NewBudget())
				if err != nil {
					b.Fatal(err)
				}
				bms = append(bms, bm)
				k.addWaiter(bm, nil)
			}
			b.ReportAllocs()
			for b.Loop() {
				k.deliver(frame, nil)
			}
			if n, err := bms[0].WhenError(); n == 0 {
				b.Logf("when never failed: it ran to the end each frame")
			} else {
				b.Logf("when failed %d times: %v", n, err)
			}
		})
	}
}

package koi_test

import (
	"context"
	"math"
	"testing"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/koi"
)

// A choose step runs branch i with probability its weight and none with
// the rest, over real HTTP: the counts at the server are within 4
// standard errors of the weights, and a nested branch runs only inside
// its parent.
func TestChooseRunsBranchesByWeight(t *testing.T) {
	srv := newChatServer(t)
	set := parseSet(t, `{"behaviors": {"s": {"frequency": 0.1, "steps": [
  {"request": {"type": "api", "method": "a"},
   "choose": [
     {"weight": 0.3, "steps": [{"delay_after_ms": [0, 1]}, {"request": {"type": "api", "method": "b"},
        "choose": [{"weight": 0.5, "steps": [{"request": {"type": "api", "method": "c"}}]}]}]},
     {"weight": 0.5, "steps": [{"request": {"type": "api", "method": "d"}}]}]},
  {"request": {"type": "api", "method": "e"}}]}}}`)
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, APIBase: srv.apiBase()})
	k := rt.New(behaviors.Identity{Index: 1, UserID: "U1", Token: "t1"}, 1)
	const n = 600
	seq := set.Behavior("s").Sequence
	for range n {
		if err := k.RunSequence(context.Background(), seq, nil); err != nil {
			t.Fatal(err)
		}
	}
	within := func(method string, runs int, p float64) {
		t.Helper()
		got := len(srv.callsOf(method))
		se := math.Sqrt(float64(runs) * p * (1 - p))
		if math.Abs(float64(got)-float64(runs)*p) > 4*se {
			t.Errorf("%s ran %d times in %d, want %.0f ± %.0f (4 SE)", method, got, runs, float64(runs)*p, 4*se)
		}
	}
	if got := len(srv.callsOf("a")); got != n {
		t.Fatalf("a ran %d times, want %d", got, n)
	}
	within("b", n, 0.3)
	within("d", n, 0.5)
	within("c", len(srv.callsOf("b")), 0.5) // only after b
	if got := len(srv.callsOf("e")); got != n {
		t.Errorf("e, after the choose step, ran %d times, want every run (%d)", got, n)
	}
}

package keeper

import (
	"testing"
	"time"

	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/wire"
)

// BenchmarkGuardrailWindow: one iteration evaluates one guardrail with a
// 5-minute window over api:* (50 keys) of a run whose every second merged
// 10 schools' reports: the guard loop's cost per rule per run per second,
// once the window cache holds the settled seconds (uncached: ~190 ms).
//
//	go test ./keeper -run '^$' -bench GuardrailWindow
func BenchmarkGuardrailWindow(b *testing.B) {
	snaps := reportSnapshots(b, 10, 50)
	k := &Keeper{agg: newAggregator(), guard: newGuard(), windows: newWindowCache()}
	now := time.Now().Truncate(time.Second)
	for sec := 310; sec >= 0; sec-- {
		for _, s := range snaps {
			if err := k.agg.add("run", now.Add(-time.Duration(sec)*time.Second), &wire.RunMetrics{Run: "run", Snapshot: s}); err != nil {
				b.Fatal(err)
			}
		}
	}
	gs, err := parseGuardrails("guardrails", "run", []state.GuardrailRule{{Key: "api:*", When: "success_rate < 95%", For: "5m", Action: "pause"}})
	if err != nil {
		b.Fatal(err)
	}
	run := &state.Run{ID: "run", State: state.RunRunning}
	k.evalGuardrail(gs[0], run, now.Add(-time.Hour), now) // the first pass fills the cache
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		v, _ := k.evalGuardrail(gs[0], run, now.Add(-time.Hour), now)
		if v.State != LiveOK {
			b.Fatalf("rule %+v", v)
		}
	}
}

// The window cache gives what the aggregator's window gives, whatever the
// windows asked and as new seconds arrive.
func TestWindowCacheMatchesAggregator(t *testing.T) {
	snaps := reportSnapshots(t, 5, 6) // keys api:method.00 … 05
	k := &Keeper{agg: newAggregator(), guard: newGuard(), windows: newWindowCache()}
	base := time.Now().Truncate(time.Second).Add(-200 * time.Second)
	for sec := range 200 {
		at := base.Add(time.Duration(sec) * time.Second)
		for i, s := range snaps {
			if (sec+i)%3 == 0 { // not every school every second
				continue
			}
			if err := k.agg.add("run", at, &wire.RunMetrics{Run: "run", Snapshot: s}); err != nil {
				t.Fatal(err)
			}
		}
		if sec < 60 {
			continue
		}
		to := at.Add(time.Second)
		for _, c := range []struct {
			sel, key string
			exact    bool
			span     time.Duration
		}{{"", "api:*", false, 30 * time.Second}, {"", "api:method.0[12]", false, 50 * time.Second}, {"", "api:method.03", true, 5 * time.Second}} {
			got := k.series("run", selector(c.key, c.exact), to.Add(-c.span), to)
			snap, _ := k.agg.window("run", to.Add(-c.span), to)
			want := pick(snap, selector(c.key, c.exact))
			if got == nil || want == nil || got.Counts != want.Counts || got.Samples() != want.Samples() {
				t.Fatalf("second %d, %s over %v: cached %+v, aggregator %+v", sec, c.key, c.span, got, want)
			}
			for _, q := range []float64{0.5, 0.99} {
				g, _ := got.Quantile(q)
				w, _ := want.Quantile(q)
				if g != w {
					t.Fatalf("second %d, %s p%g: cached %v, aggregator %v", sec, c.key, 100*q, g, w)
				}
			}
		}
		k.windows.endPass(map[string]bool{"run": true})
	}
	n := 0
	for _, sc := range k.windows.runs["run"] {
		n += len(sc.tiers[0])
	}
	if n == 0 || n > 30+50+5+3*5 {
		t.Errorf("%d cached seconds: the cache does not keep (only) what the windows need", n)
	}
}

package keeper

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/koipond/koipond/keeper/verdict"
	"github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/wire"
)

// busyRun feeds an aggregator a run of 20 behaviors and 400 api keys with
// latencies (a sketch each), a second at a time for a minute, as a run a
// CLI waits on looks while it polls the run view; it returns the
// behaviors' specs.
func busyRun(tb testing.TB, a *aggregator) []verdict.FidelitySpec {
	tb.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	var specs []verdict.FidelitySpec
	for i := range 20 {
		specs = append(specs, verdict.FidelitySpec{Name: fmt.Sprint("b", i), Key: fmt.Sprint("behavior:b", i), Frequency: 0.5})
	}
	start := time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC)
	for s := range 60 {
		var rec metrics.Recorder
		for i := range 400 {
			for range 5 {
				rec.Observe(fmt.Sprint("api:m", i), time.Duration(r.IntN(500))*time.Millisecond, metrics.OK)
			}
		}
		for _, sp := range specs {
			rec.Count(sp.Key, metrics.OK)
		}
		snap := rec.Snapshot()
		snap.Exposure = &metrics.Exposure{}
		snap.Exposure.Add(15, 1, 40)
		data, err := snap.MarshalBinary()
		if err != nil {
			tb.Fatal(err)
		}
		if err := a.add("run", start.Add(time.Duration(s)*time.Second), &wire.RunMetrics{Run: "run", Snapshot: data}); err != nil {
			tb.Fatal(err)
		}
	}
	return specs
}

// The run view's live verdict: what it copies of the run's metrics and
// the judging, per GET /runs/:id.
func BenchmarkRunViewFidelity(b *testing.B) {
	a := newAggregator()
	specs := busyRun(b, a)
	b.Run("whole total", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			snap, _, _ := a.total("run")
			verdict.JudgeFidelity(verdict.FidelityInput{Behaviors: specs, Snapshot: snap, Koi: 40, Elapsed: 60})
		}
	})
	b.Run("behaviors only", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			snap, _ := a.fidelityTotals("run", specs)
			verdict.JudgeFidelity(verdict.FidelityInput{Behaviors: specs, Snapshot: snap, Koi: 40, Elapsed: 60})
		}
	})
}

package keeper

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/koipond/koipond/keeper/verdict"
	"github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/wire"
)

// The run view judges fidelity over the behaviors' counts and the
// exposure only (fidelityTotals); its verdict is the one judged over the
// run's whole merged total, failures by reason included.
func TestFidelityTotalsJudgeAsTheWholeTotal(t *testing.T) {
	a := newAggregator()
	specs := busyRun(t, a)
	var rec metrics.Recorder
	for range 30 {
		rec.Series(specs[0].Key).ObserveReason(time.Millisecond, metrics.Error, "channel_not_found", "sample")
		rec.Count(specs[1].Key, metrics.Halted)
	}
	data, err := rec.Snapshot().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.add("run", time.Date(2026, 12, 3, 15, 1, 0, 0, time.UTC), &wire.RunMetrics{Run: "run", Snapshot: data}); err != nil {
		t.Fatal(err)
	}
	specs = append(specs, verdict.FidelitySpec{Name: "never", Key: "behavior:never", Frequency: 0.5})
	total, _, _ := a.total("run")
	in := verdict.FidelityInput{Behaviors: specs, Koi: 40, Elapsed: 60}
	in.Snapshot = total
	want, _ := json.Marshal(verdict.JudgeFidelity(in))
	in.Snapshot = a.fidelityTotals("run", specs)
	got, _ := json.Marshal(verdict.JudgeFidelity(in))
	if string(got) != string(want) {
		t.Errorf("verdict over the behaviors' totals\n%s\nwant the one over the whole total\n%s", got, want)
	}
	if in.Snapshot = a.fidelityTotals("no such run", specs); in.Snapshot.Exposure != nil || len(in.Snapshot.Series) != 0 {
		t.Errorf("an unknown run has totals %+v", in.Snapshot)
	}
}

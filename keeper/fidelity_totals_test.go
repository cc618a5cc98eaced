package keeper

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/koipond/koipond/keeper/state"
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
	in.Snapshot, in.KeysFull = a.fidelityTotals("run", specs)
	if in.KeysFull {
		t.Error("420 keys are said to be at the cap")
	}
	got, _ := json.Marshal(verdict.JudgeFidelity(in))
	if string(got) != string(want) {
		t.Errorf("verdict over the behaviors' totals\n%s\nwant the one over the whole total\n%s", got, want)
	}
	if in.Snapshot, _ = a.fidelityTotals("no such run", specs); in.Snapshot.Exposure != nil || len(in.Snapshot.Series) != 0 {
		t.Errorf("an unknown run has totals %+v", in.Snapshot)
	}
}

// A behavior that ran after the run's keys reached the cap has its key
// dropped by the aggregator: the run view and the report judge it
// unmeasured, not under.
func TestFidelityKeysAtCap(t *testing.T) {
	a := newAggregator()
	at := time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC)
	feed := func(keys ...string) error {
		var rec metrics.Recorder
		for _, k := range keys {
			rec.Count(k, metrics.OK)
		}
		snap := rec.Snapshot()
		snap.Exposure = &metrics.Exposure{}
		snap.Exposure.Add(15, 1, 500)
		data, err := snap.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		at = at.Add(time.Second)
		return a.add("run", at, &wire.RunMetrics{Run: "run", Snapshot: data})
	}
	var keys []string
	for i := range maxKeys {
		keys = append(keys, fmt.Sprint("api:m", i))
	}
	if err := feed(keys...); err != nil {
		t.Fatal(err)
	}
	if err := feed("behavior:late"); err == nil {
		t.Fatal("the behavior's key was not dropped: the test does not reach the cap")
	}
	specs := []verdict.FidelitySpec{{Name: "late", Key: "behavior:late", Frequency: 0.5}}
	in := verdict.FidelityInput{Behaviors: specs, Koi: 10, Elapsed: 6000}
	in.Snapshot, in.KeysFull = a.fidelityTotals("run", specs)
	if f := verdict.JudgeFidelity(in); f.Behaviors[0].Verdict != state.FidelityUnmeasured || f.Verdict == state.FidelityNotMatched {
		t.Errorf("run view: behavior %s, run %s (%s); want unmeasured, not not-matched", f.Behaviors[0].Verdict, f.Verdict, f.Summary)
	}
	if total, _, _ := a.total("run"); !keysAtCap(total) { // what the report judges over (judgeFidelity)
		t.Error("the report's total is not said to be at the cap")
	}
}

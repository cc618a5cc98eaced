package verdict

import (
	"fmt"
	"strings"
	"testing"

	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/metrics"
)

// A set with more behaviors than a run keeps metric keys: once the keys
// are at the keeper's cap, a behavior without a series may well have run
// (its key dropped), so it is unmeasured, not under, and a note says why;
// the run is not "not matched" for it. Below the cap a behavior without
// a series never ran, and is under.
func TestFidelityDroppedKeysUnmeasured(t *testing.T) {
	e := &metrics.Exposure{}
	e.Add(10, 1, 10_000) // 5,000 runs expected of a behavior at f 0.5
	var specs []FidelitySpec
	snap := &metrics.Snapshot{Series: map[string]*metrics.SeriesSnapshot{}, Exposure: e}
	for i := range 600 {
		sp := FidelitySpec{Name: fmt.Sprint("b", i), Key: fmt.Sprint("behavior:b", i), Frequency: 0.5}
		specs = append(specs, sp)
		if i < 450 { // the rest were dropped at the cap (500 keys with the api keys)
			snap.Series[sp.Key] = &metrics.SeriesSnapshot{Counts: [metrics.NumOutcomes]uint64{metrics.OK: 5_000}}
		}
	}
	f := JudgeFidelity(FidelityInput{Behaviors: specs, Snapshot: snap, KeysFull: true, Koi: 10, Elapsed: 60_000})
	if f.Verdict != state.FidelityMatched {
		t.Errorf("verdict %s (%s), want matched: no behavior that reported was off", f.Verdict, f.Summary)
	}
	counts := map[string]int{}
	for _, b := range f.Behaviors {
		counts[b.Verdict]++
	}
	if counts[state.FidelityWithin] != 450 || counts[state.FidelityUnmeasured] != 50 {
		t.Errorf("verdicts %v, want 450 within and 50 unmeasured (of the 500 judged)", counts)
	}
	if !strings.Contains(f.Summary, "50 behaviors unmeasured") {
		t.Errorf("the summary %q does not say 50 behaviors were not measured", f.Summary)
	}
	if notes := strings.Join(f.Notes, "\n"); !strings.Contains(notes, "50 behaviors have no metric key") {
		t.Errorf("no note of the dropped keys in\n%s", notes)
	}

	f = JudgeFidelity(FidelityInput{Behaviors: specs[440:460], Snapshot: snap, Koi: 10, Elapsed: 60_000})
	if f.Verdict != state.FidelityNotMatched || f.Behaviors[15].Verdict != state.FidelityUnder {
		t.Errorf("below the cap: verdict %s, behavior %s %s; want not matched, under", f.Verdict, f.Behaviors[15].Behavior, f.Behaviors[15].Verdict)
	}
}

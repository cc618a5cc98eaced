package keeper

import (
	"context"
	"testing"
	"time"

	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/wire"
)

// addCalls reports n calls of key with outcome o on run at keeper time at.
func addCalls(t *testing.T, k *Keeper, run, key string, at time.Time, n int, o metrics.Outcome) {
	t.Helper()
	var rec metrics.Recorder
	for range n {
		rec.Observe(key, time.Millisecond, o)
	}
	snap, err := rec.Snapshot().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if err := k.agg.add(run, at, &wire.RunMetrics{Run: run, Snapshot: snap}); err != nil {
		t.Fatal(err)
	}
}

// A failing stretch whose start cannot be recorded (the write fails) is
// not taken as started: the next pass records it — the failure counted,
// audited and notified.
func TestLiveFailureStartRetriedAfterWriteError(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	seedRun(t, k, 0)
	run, err := k.CreateRun(context.Background(), "test", RunSpec{Name: "live", BehaviorSet: "bg", Koi: 0, ThresholdWindowSecs: 3,
		Thresholds: map[string][]string{"api:x": {"error_rate < 5%"}},
		Target:     state.Target{APIBase: "http://127.0.0.1:9/api"}})
	if err != nil {
		t.Fatal(err)
	}
	// Metrics an hour ahead, out of the real guard loop's windows.
	future := time.Now().Truncate(time.Second).Add(time.Hour)
	for sec := range 5 {
		addCalls(t, k, run.ID, "api:x", future.Add(time.Duration(sec)*time.Second), 50, metrics.ServerError)
	}
	now := future.Add(5*time.Second + 500*time.Millisecond)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := k.guardPass(cancelled, now); err == nil {
		t.Fatal("a pass with a cancelled context recorded its changes")
	}
	if s := k.openFailure(run.ID, "api:x", "error_rate < 5%", now.Add(time.Second)); s != 0 {
		t.Errorf("an unrecorded stretch is open for %.1f s", s)
	}
	if err := k.guardPass(context.Background(), now.Add(100*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	got := k.State().Run(nil, run.ID)
	if len(got.LiveThresholds) != 1 || got.LiveThresholds[0].Failures != 1 {
		t.Fatalf("live thresholds %+v", got.LiveThresholds)
	}
	if n := len(auditWith(k, "keeper", "api:x error_rate < 5%")); n != 1 {
		t.Errorf("%d audit entries of the failure", n)
	}
	if s := k.openFailure(run.ID, "api:x", "error_rate < 5%", now.Add(1100*time.Millisecond)); s < 0.9 {
		t.Errorf("the recorded stretch is open for %.1f s", s)
	}
}
